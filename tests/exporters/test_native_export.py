"""The native form: one LSTM node per layer with P filled, symbolic batch/seq, validated before writing."""
import numpy as np
import onnx
import pytest

from lstm_onnx.exporters.export import ExportError, ExportOptions, build_model, export_checkpoint
from lstm_onnx.exporters.opsets import OpsetError
from lstm_onnx.exporters.validate import ValidationError, check_symbolic_dims
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from tests.helpers import make_checkpoint


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_one_lstm_node_per_layer_with_p(tmp_path, num_layers, bidirectional):
    ckpt = make_checkpoint(num_layers=num_layers, bidirectional=bidirectional)
    model = export_checkpoint(ckpt, tmp_path / "m.onnx")
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == num_layers
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    D, H = (2 if bidirectional else 1), 8
    for node in lstms:
        assert len(node.input) == 8 and node.input[7], "P must be wired"
        assert inits[node.input[7]].shape == (D, 3 * H) and np.abs(inits[node.input[7]]).max() > 0
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["direction"] == (b"bidirectional" if bidirectional else b"forward")
        assert attrs.get("layout", 0) == 0
    assert all(inits[n.input[1]].dtype == np.float32 for n in lstms)


def test_plain_model_has_no_p(tmp_path):
    model = export_checkpoint(make_checkpoint(peephole=False), tmp_path / "m.onnx")
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    assert len(lstm.input) < 8


def test_exports_in_one_process_stay_dynamic(tmp_path):
    """torch.onnx can freeze the sequence length on a second export in one process (a stale dispatch
    cache). Our exporter builds the graph from the weights, and every export is checked at unseen sizes."""
    first = export_checkpoint(make_checkpoint(seed=1), tmp_path / "a.onnx")
    second = export_checkpoint(make_checkpoint(seed=2, num_layers=2), tmp_path / "b.onnx")
    for model, path in ((first, tmp_path / "a.onnx"), (second, tmp_path / "b.onnx")):
        check_symbolic_dims(model)
        with OnnxRuntimeRunner(path) as r:
            for batch, seq in ((1, 1), (7, 31)):
                assert r.infer({"x": np.zeros((batch, seq, 3), np.float32)})["y"].shape == (batch, 2)


def test_frozen_sequence_axis_is_caught():
    model = build_model(make_checkpoint(), ExportOptions())
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 17
    with pytest.raises(ValidationError, match="axis"):
        check_symbolic_dims(model)


def test_stateful_bidirectional_is_refused(tmp_path):
    with pytest.raises(ExportError, match="unidirectional"):
        export_checkpoint(make_checkpoint(bidirectional=True), tmp_path / "m.onnx", ExportOptions(stateful=True))


@pytest.mark.parametrize("opset", [13, 99])
def test_unsupported_opset_is_a_clear_error(tmp_path, opset):
    with pytest.raises(OpsetError, match="choose 14.."):
        export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(opset=opset))


def test_metadata_travels(tmp_path):
    from lstm_onnx.core import metadata

    export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(stateful=True))
    meta = metadata.read(str(tmp_path / "m.onnx"))
    assert meta["form"] == "native" and meta["stateful"] is True
    assert meta["config"]["model"]["hidden_size"] == 8 and meta["feature_names"] == ["f0", "f1", "f2"]
    assert set(meta["normalization"]) == {"input_mean", "input_std", "target_mean", "target_std"}
    from lstm_onnx.core.machine import fingerprint

    assert meta["validated_on"]["cpu"] == fingerprint()["cpu"]  # where its validation ran
    export_checkpoint(make_checkpoint(), tmp_path / "n.onnx", ExportOptions(), validate=False)
    assert "validated_on" not in metadata.read(str(tmp_path / "n.onnx"))
