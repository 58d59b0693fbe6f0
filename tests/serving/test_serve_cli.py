"""`lstm-pipeline serve` refuses bad models and settings with one line, before binding anything."""
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests import models


def run(*args):
    return CliRunner().invoke(cli, ["serve", *args])


def test_missing_model(tmp_path):
    r = run(str(tmp_path / "none.onnx"))
    assert r.exit_code == 1 and "model not found" in r.output and "Traceback" not in r.output


def test_bad_setting(serve_model):
    r = run(str(serve_model), "--max-batch", "0")
    assert r.exit_code == 1 and "max_batch must be >= 1" in r.output


def test_static_shapes_are_refused(tmp_path):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    path = tmp_path / "unrolled.onnx"
    export_checkpoint(models.checkpoint(), path, ExportOptions(form="unrolled", seq_len=4, batch_size=1))
    r = run(str(path))
    assert r.exit_code == 1 and "fixed batch/sequence sizes" in r.output
