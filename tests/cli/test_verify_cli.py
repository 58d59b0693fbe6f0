"""`lstm-pipeline verify`: [CHECKPOINT] MODEL, outputs, exit codes, clean user errors."""
import json

import pytest
from click.testing import CliRunner

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.cli.main import cli


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
    result = run("verify", model, "--runner", "onnx-reference", "--runner", "onnxruntime-cuda")
    assert result.exit_code == 0, result.output
    assert "parity against onnxruntime-cpu" in result.output
    assert "unavailable" in result.output and "placement" in result.output


def test_checkpoint_then_model_still_works(files):
    ckpt, model = files
    result = run("verify", ckpt, model, "--runner", "numpy", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["reference"] == "torch" and data["passed"]
    here = json.loads(run("doctor", "--json").output)["machine"]
    assert (data["machine"]["cpu"], data["machine"]["cores"]) == (here["cpu"], here["cores"])  # where it ran


def test_checkpoint_then_model_markdown(files):
    ckpt, model = files
    result = run("verify", ckpt, model, "--runner", "onnxruntime-cpu", "--markdown")
    assert result.exit_code == 0, result.output
    assert "| onnxruntime-cpu |" in result.output and "torch" in result.output


def test_failure_exits_1(files, tmp_path):
    pytest.importorskip("openvino")
    _, model = files
    result = run("verify", model, "--runner", "openvino-cpu")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "likely dropped P" in result.output


def test_save_then_expected(files, tmp_path):
    _, model = files
    assert run("verify", model, "--runner", "onnx-reference", "--save-inputs", tmp_path / "in.npz",
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


def test_checkpoint_has_one_spelling(files):
    ckpt, model = files
    result = run("verify", model, "--checkpoint", ckpt)
    assert result.exit_code == 2 and "No such option '--checkpoint'" in result.output


def test_old_spellings_are_accepted_and_reported_canonically(files):
    _, model = files
    result = run("verify", model, "--runner", "onnx.reference", "--baseline", "ort-cpu")
    assert result.exit_code == 0, result.output
    assert "parity against onnxruntime-cpu" in result.output and "onnx-reference  " in result.output


def test_a_misspelt_runner_gets_a_suggestion(files):
    _, model = files
    result = run("verify", model, "--runner", "onnxruntime-cdua")
    assert result.exit_code == 2 and "did you mean onnxruntime-cuda" in result.output
    assert "Traceback" not in result.output


def test_every_runner_skipped_exits_3_with_the_reasons(files):
    _, model = files
    result = run("verify", model, "--runner", "numpy")
    assert result.exit_code == 3, result.output
    assert "NOTHING COMPARED" in result.output and "needs a checkpoint" in result.output
    data = json.loads(run("verify", model, "--runner", "numpy", "--json").output)
    assert data["status"] == "NOTHING COMPARED" and "needs a checkpoint" in data["skipped"]["numpy"]


def test_cuda_on_a_machine_without_it_exits_3(files):
    from lstm_onnx.runtimes.ort import available_providers

    if "cuda" in available_providers():
        pytest.skip("this machine has ORT CUDA")
    _, model = files
    result = run("verify", model, "--runner", "onnxruntime-cuda", "--json")
    assert result.exit_code == 3
    assert json.loads(result.output)["skipped"]["onnxruntime-cuda"].startswith("unavailable (")


def test_inputs_of_the_wrong_dtype_are_one_line(files, tmp_path):
    import numpy as np

    _, model = files
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 5, 4), np.float64))
    result = run("verify", model, "--inputs", tmp_path / "in.npz")
    assert result.exit_code == 1 and "the model takes float32" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_int8_export_then_verify(files, tmp_path):
    ckpt, _ = files
    out = tmp_path / "int8.onnx"
    assert run("export", ckpt, "-o", out, "--quantize", "int8").exit_code == 0
    result = run("verify", ckpt, out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "DynamicQuantizeLSTM" in result.output
