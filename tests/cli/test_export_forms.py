"""`export` with --form/--target/--seq-len/--dtype/--quantize: thin wrapper, one-line errors."""
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.core import metadata
from tests.helpers import make_checkpoint


@pytest.fixture()
def ckpt_path(tmp_path):
    path = tmp_path / "model.pt"
    make_checkpoint(num_layers=2).save(path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_auto_for_ort_cuda_writes_the_decomposed_form(tmp_path, ckpt_path):
    out = tmp_path / "m.onnx"
    result = run("export", ckpt_path, "-o", out, "--form", "auto", "--target", "ort-cuda", "--stateful")
    assert result.exit_code == 0, result.output
    assert "form decomposed (auto for ort-cuda)" in result.output
    meta = metadata.read(str(out))
    assert meta["form"] == "decomposed" and meta["stateful"] is True


def test_unrolled_then_verify_at_its_static_size(tmp_path, ckpt_path):
    out = tmp_path / "m.onnx"
    result = run("export", ckpt_path, "-o", out, "--form", "unrolled", "--seq-len", 5, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert metadata.read(str(out))["seq_len"] == 5
    verified = run("verify", ckpt_path, out, "--runner", "numpy", "--runner", "onnxruntime-cpu",
                   "--runner", "onnx.reference")
    assert verified.exit_code == 0, verified.output


def test_float16_export_prints_its_accuracy_and_verifies(tmp_path, ckpt_path):
    out = tmp_path / "m.onnx"
    result = run("export", ckpt_path, "-o", out, "--form", "decomposed", "--dtype", "float16")
    assert result.exit_code == 0, result.output
    assert "float16" in result.output and "accuracy not measured" in result.output  # 3 features, data has 10
    verified = run("verify", ckpt_path, out, "--runner", "onnxruntime-cpu")
    assert verified.exit_code == 0, verified.output  # compared at the float16 tolerance, from the metadata


@pytest.mark.parametrize("args,message", [
    (["--dtype", "float16"], "float32-only"),
    (["--form", "auto"], "needs --target"),
    (["--form", "unrolled"], "needs --seq-len"),
    (["--seq-len", "4"], "only apply to --form unrolled"),
    (["--opset", "13"], "opset 13 is not supported"),
    (["--form", "auto", "--target", "nope"], "unknown target"),
])
def test_bad_options_are_one_line_errors(tmp_path, ckpt_path, args, message):
    out = tmp_path / "m.onnx"
    result = run("export", ckpt_path, "-o", out, *args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_inspect_shows_native_runtimes(tmp_path, ckpt_path):
    out = tmp_path / "m.onnx"
    assert run("export", ckpt_path, "-o", out).exit_code == 0
    result = run("inspect", out)
    assert "runs natively on: ort-cpu, tensorrt, onnx-reference" in result.output
    assert "not openvino: LSTM with P: wrong" in result.output
