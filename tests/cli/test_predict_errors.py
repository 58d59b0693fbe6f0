"""`lstm-pipeline predict`: models the Predictor cannot drive as asked end in one line, and placement problems
are printed as warnings."""
import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests import models
from tests.placement_fakes import move_lstm_nodes


@pytest.fixture(scope="module")
def ckpt():
    return models.checkpoint()


def predict(model, x, tmp_path):
    np.save(tmp_path / "x.npy", np.asarray(x, np.float32))
    return CliRunner().invoke(cli, ["predict", str(model), str(tmp_path / "x.npy")])


def one_line_error(r, words: str) -> None:
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit) and "Traceback" not in r.output, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.strip()]
    assert line.startswith("Error: ") and words in line, r.output


def test_unrolled_model_at_another_sequence_length(ckpt, tmp_path):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    path = tmp_path / "unrolled.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form="unrolled", seq_len=4, batch_size=1))
    x = np.stack(models.raw_inputs(np.random.default_rng(0), [4]))
    ok = predict(path, x, tmp_path)
    assert ok.exit_code == 0, ok.output
    np.testing.assert_allclose(np.loadtxt(ok.output.splitlines()[1:], delimiter=",", ndmin=2)[:, 1:],
                               models.torch_reference(ckpt, x), atol=1e-4, rtol=1e-4)
    one_line_error(predict(path, np.zeros((1, 6, models.F)), tmp_path), "[batch, seq] = [1, 4] only")


def test_model_whose_input_is_not_named_x(ckpt, tmp_path):
    import onnx

    model = onnx.load(str(models.export(ckpt, tmp_path / "m.onnx")))
    model.graph.input[0].name = "features"
    for node in model.graph.node:
        node.input[:] = ["features" if name == "x" else name for name in node.input]
    onnx.save(model, tmp_path / "renamed.onnx")
    one_line_error(predict(tmp_path / "renamed.onnx", np.zeros((1, 3, models.F)), tmp_path), "input `x`")


def test_placement_problems_are_printed_as_warnings(ckpt, tmp_path, monkeypatch):
    move_lstm_nodes(monkeypatch)
    path = models.export(ckpt, tmp_path / "m.onnx")
    r = CliRunner().invoke(cli, ["predict", str(path), str(_csv(tmp_path))])
    assert r.exit_code == 0, r.output
    assert "warning: Predictor(cpu): LSTM node" in r.stderr and "--form decomposed" in r.stderr
    assert "warning" not in r.stdout


def _csv(tmp_path):
    path = tmp_path / "x.csv"
    np.savetxt(path, models.raw_inputs(np.random.default_rng(1), [3])[0], delimiter=",")
    return path
