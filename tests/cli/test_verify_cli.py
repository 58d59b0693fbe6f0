"""`lstm-pipeline verify`: [CHECKPOINT] MODEL, --checkpoint, outputs, exit codes, clean user errors."""
import json

import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.bench.models import export_form, random_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    where = tmp_path_factory.mktemp("verify-cli")
    ckpt = random_checkpoint(4, 8)
    ckpt.save(where / "model.pt")
    export_form(ckpt, "native", where / "model.onnx")
    return where / "model.pt", where / "model.onnx"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_model_only(files):
    _, model = files
    result = run("verify", model, "--runner", "onnx.reference", "--runner", "onnxruntime-cuda")
    assert result.exit_code == 0, result.output
    assert "parity against onnxruntime-cpu" in result.output
    assert "unavailable" in result.output and "placement" in result.output


def test_checkpoint_then_model_still_works(files):
    ckpt, model = files
    result = run("verify", ckpt, model, "--runner", "numpy", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["reference"] == "torch" and data["passed"]


def test_checkpoint_option(files):
    ckpt, model = files
    result = run("verify", model, "--checkpoint", ckpt, "--runner", "onnxruntime-cpu", "--markdown")
    assert result.exit_code == 0, result.output
    assert "| onnxruntime-cpu |" in result.output


def test_failure_exits_1(files, tmp_path):
    pytest.importorskip("openvino")
    _, model = files
    result = run("verify", model, "--runner", "openvino-cpu")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "likely dropped P" in result.output


def test_save_then_expected(files, tmp_path):
    _, model = files
    assert run("verify", model, "--runner", "onnx.reference", "--save-inputs", tmp_path / "in.npz",
               "--save-outputs", tmp_path / "out.npz").exit_code == 0
    result = run("verify", model, "--inputs", tmp_path / "in.npz", "--expected", tmp_path / "out.npz",
                 "--runner", "onnxruntime-cpu")
    assert result.exit_code == 0, result.output
    assert "expected:out.npz" in result.output


@pytest.mark.parametrize("args, message", [
    (["--provider-option", "cuda-use_tf32"], "PROVIDER:KEY=VALUE"),
    (["--runner", "warp-drive"], "unknown runner"),
    (["--inputs", "missing.npz"], "not found"),
])
def test_user_errors_are_one_line(files, args, message):
    _, model = files
    result = run("verify", model, *args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_too_many_paths(files):
    ckpt, model = files
    result = run("verify", ckpt, model, model)
    assert result.exit_code != 0 and "[CHECKPOINT] MODEL" in result.output


def test_checkpoint_given_twice(files):
    ckpt, model = files
    result = run("verify", ckpt, model, "--checkpoint", ckpt)
    assert result.exit_code != 0 and "once" in result.output
