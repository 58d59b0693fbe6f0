"""The torch.onnx route: PeepholeLSTM inside any model exports to native LSTM nodes with P."""
import numpy as np
import onnx
import pytest
import torch

from lstm_onnx.exporters.export import ExportOptions
from lstm_onnx.exporters.torch_onnx import export_via_torch
from lstm_onnx.exporters.validate import check_symbolic_dims, validate_model
from lstm_onnx.pipeline.model import PeepholeLSTM
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from tests.helpers import make_checkpoint

pytestmark = pytest.mark.slow  # each torch.onnx export takes ~5 s on 2 cores
pytest.importorskip("onnxscript", reason="torch.onnx export needs onnxscript: pip install .[torch-onnx]")


def test_two_exports_in_one_process_stay_dynamic_and_exact():
    """The stale-dispatch-cache failure froze the sequence length on a second export in one process."""
    for seed, kwargs, example_seq in ((1, dict(num_layers=2, bidirectional=True), 5), (2, dict(), 11)):
        ckpt = make_checkpoint(seed=seed, **kwargs)
        model = export_via_torch(ckpt, ExportOptions(opset=21), example_seq=example_seq)
        check_symbolic_dims(model)
        validate_model(model, ckpt, ExportOptions())  # parity with torch at sizes the export never saw
        lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
        assert len(lstms) == ckpt.model_config.num_layers and all(len(n.input) == 8 for n in lstms)


def test_stateful_with_lengths():
    ckpt = make_checkpoint(num_layers=2)
    options = ExportOptions(stateful=True, lengths=True, opset=21)
    model = export_via_torch(ckpt, options)
    assert [i.name for i in model.graph.input] == ["x", "lengths", "h0", "c0"]
    assert [o.name for o in model.graph.output] == ["y", "hn", "cn"]
    validate_model(model, ckpt, options)


def test_a_user_model_containing_peephole_lstm():
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = PeepholeLSTM(4, 6, batch_first=True)
            self.out = torch.nn.Linear(6, 3)

        def forward(self, x):
            return torch.softmax(self.out(self.lstm(x)[0]), -1)

    torch.manual_seed(0)
    model = Tagger().eval()
    program = torch.onnx.export(model, (torch.zeros(2, 5, 4),), dynamo=True, opset_version=21,
                                dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")},))
    proto = program.model_proto
    lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
    p = onnx.numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == lstm.input[7]))
    assert p.shape == (1, 18) and np.abs(p).max() > 0
    x = np.random.default_rng(0).standard_normal((3, 9, 4)).astype(np.float32)
    with OnnxRuntimeRunner(proto.SerializeToString()) as r:
        (y,) = r.infer({r.input_names[0]: x}).values()
    with torch.no_grad():
        np.testing.assert_allclose(y, model(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=1e-5)
