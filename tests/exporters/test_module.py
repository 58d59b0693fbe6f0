"""export --module: a user's module (Conv1d + PeepholeLSTM or nn.LSTM + MLP) to native LSTM nodes, validated
against the module itself; verify --module compares runtimes with it; a wrong gate order is caught."""
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.exporters.errors import ExportError
from lstm_onnx.exporters.module import build_module_model, export_module, load_module
from lstm_onnx.exporters.validate import ValidationError
from lstm_onnx.pipeline.model import LegacyExportError
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

pytestmark = pytest.mark.slow  # each torch.onnx export takes ~5 s on 2 cores
pytest.importorskip("onnxscript", reason="torch.onnx export needs onnxscript: pip install .[torch-onnx]")

USER_MODULE = '''
import torch
from torch import nn
from lstm_onnx.pipeline.model import PeepholeLSTM


class ConvLSTM(nn.Module):
    def __init__(self, plain=False):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, kernel_size=3)
        self.lstm = nn.LSTM(8, 16, batch_first=True) if plain else PeepholeLSTM(8, 16, batch_first=True)
        self.head = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.head(self.lstm(z)[0][:, -1])


def peephole():
    torch.manual_seed(0)
    m = ConvLSTM()
    with torch.no_grad():
        m.lstm.peephole_l0.mul_(8)  # peepholes that matter: a runtime that drops P is far off
    return m


def plain():
    torch.manual_seed(1)
    return ConvLSTM(plain=True)


def three():
    return 3
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "user_convlstm.py").write_text(USER_MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(d))
        yield d


def lstm_nodes(model):
    return [n for n in model.graph.node if n.op_type == "LSTM"]


def initializer(model, name):
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def test_conv_peephole_lstm_module_exports_and_verifies_at_unseen_sizes(user):
    out = user / "peep.onnx"
    r = CliRunner().invoke(cli, ["export", "--module", "user_convlstm:peephole", "--input-shape", "2,16,3",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    model = onnx.load(str(out))
    (lstm,) = lstm_nodes(model)
    ref = load_module("user_convlstm:peephole")
    p = initializer(model, lstm.input[7])  # P: [D, 3H], ONNX's (i, o, f) from PyTorch's (i, f, o) rows
    np.testing.assert_array_equal(p[0], ref.lstm.peephole_l0.detach().numpy()[[0, 2, 1]].reshape(-1))
    meta = {k.key: k.value for k in model.metadata_props}
    assert meta["lstm_onnx.source_module"] == "user_convlstm:peephole" and meta["lstm_onnx.form"] == "native"
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == ["batch", "seq"]
    # verify against the module itself, at a batch and length the export never saw
    r = CliRunner().invoke(cli, ["verify", str(out), "--module", "user_convlstm:peephole", "--runner",
                                 "onnxruntime-cpu", "--batch", "7", "--seq", "41", "--json"])
    assert r.exit_code == 0, r.output
    import json
    report = json.loads(r.output[r.output.index("{"):])
    assert report["reference"] == "torch-module" and report["passed"]
    assert report["inputs"]["x"] == [7, 41, 3]


def test_plain_nn_lstm_becomes_a_native_lstm_without_p(user):
    module = load_module("user_convlstm:plain")
    model = export_module(module, user / "plain.onnx", (2, 12, 3))
    (lstm,) = lstm_nodes(model)
    assert len(lstm.input) < 8 or lstm.input[7] == ""
    x = np.random.default_rng(3).standard_normal((4, 33, 3)).astype(np.float32)
    with OnnxRuntimeRunner(str(user / "plain.onnx"), profile=False) as r:
        y = r.infer({"x": x})["y"]
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=1e-5)
    from tests.core.test_metadata_schema import VALIDATOR, decoded  # the module export's metadata is documented

    assert [e.message for e in VALIDATOR.iter_errors(decoded(user / "plain.onnx"))] == []


def test_wrong_gate_order_is_refused_and_verify_fails(user, monkeypatch):
    """The mutation: PyTorch's gate order handed to ONNX as it is (i, f, g, o instead of i, o, f, c)."""
    import lstm_onnx.pipeline.onnx_symbolic as symbolic

    monkeypatch.setattr(symbolic, "reorder_gates", lambda w: w)
    module = load_module("user_convlstm:peephole")
    with pytest.raises(ValidationError, match="disagrees with the module"):
        export_module(module, user / "never.onnx", (2, 16, 3))
    assert not (user / "never.onnx").exists()
    bad = build_module_model(module, (2, 16, 3))
    onnx.save(bad, user / "bad.onnx")
    r = CliRunner().invoke(cli, ["verify", str(user / "bad.onnx"), "--module", "user_convlstm:peephole",
                                 "--runner", "onnxruntime-cpu"])
    assert r.exit_code == 1, r.output


def test_legacy_exporter_is_refused_in_one_line(user):
    module = load_module("user_convlstm:peephole")
    with pytest.raises(LegacyExportError, match=r"dynamo=True"):
        torch.onnx.export(module, (torch.zeros(2, 8, 3),), str(user / "legacy.onnx"), dynamo=False)


@pytest.mark.parametrize("spec, words", [
    ("user_convlstm", "expected MODULE:FACTORY"), ("no_such_pkg_x:make", "cannot import no_such_pkg_x"),
    ("user_convlstm:nothing", "has no 'nothing'"), ("user_convlstm:three", "returned a int, not a torch.nn.Module"),
    ("user_convlstm:torch", "is a module, not a function"), ("user_convlstm:PeepholeLSTM", "raised TypeError")])
def test_bad_module_specs(user, spec, words):
    with pytest.raises(ExportError, match=words):
        load_module(spec)
