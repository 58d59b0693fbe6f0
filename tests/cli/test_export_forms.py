"""`export` with --form/--target/--seq-len/--dtype/--quantize: thin wrapper, one-line errors."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.core import metadata
from lstm_onnx.exporters.forms import AUTO, DTYPES, FORMS
from lstm_onnx.runtimes.capabilities import CPU, RUNTIMES, WRONG, YES, choose_form
from tests.helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def target_with(**cells) -> str:
    return next(k for k, rt in RUNTIMES.items() if all(getattr(rt, f) == c for f, c in cells.items()))


@pytest.fixture()
def ckpt_path(tmp_path):
    path = tmp_path / "model.pt"
    make_checkpoint(num_layers=2).save(path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_auto_for_a_target_that_moves_p_to_the_cpu_writes_the_decomposed_form(tmp_path, ckpt_path):
    out, target = tmp_path / "m.onnx", target_with(peepholes=CPU)
    result = run("export", ckpt_path, "-o", out, "--form", "auto", "--target", target, "--stateful")
    assert result.exit_code == 0, result.output
    assert f"form decomposed (auto for {target})" in result.output
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
    assert "runs natively on: " + ", ".join(k for k, rt in RUNTIMES.items() if rt.peepholes == YES) in result.output
    assert f"not {target_with(peepholes=WRONG)}: LSTM with P: wrong" in result.output
    assert result.output.rstrip().endswith("form native: one LSTM op per layer, with P; dynamic batch and "
                                           "sequence; float32; lengths by sequence_lens; CUDA graph capture no")
    facts = json.loads(run("inspect", out, "--json").output)["form"]
    assert facts["name"] == "native" and facts["lstm_node"] and not facts["static_shapes"]


def test_the_choices_are_the_rows():
    params = {p.name: p for p in cli.commands["export"].params}
    assert list(params["form"].type.choices) == [*FORMS, AUTO]
    assert list(params["dtype"].type.choices) == list(DTYPES)
    help_text = params["form"].help
    assert all(f"{name}: {form.summary}." in help_text for name, form in FORMS.items())


def test_known_wrong_is_refused_in_one_line_naming_the_fix(tmp_path, ckpt_path):
    out, target = tmp_path / "m.onnx", target_with(peepholes=WRONG)
    result = run("export", ckpt_path, "-o", out, "--form", "native", "--target", target)
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()
    assert error == [f"Error: {target} computes --form native wrong for this model (LSTM with P: wrong): use "
                     f"--form {choose_form(target, True)} (what --form auto --target {target} picks), or pass "
                     "--allow-known-wrong to write it anyway"]
    assert not out.exists()


def test_allow_known_wrong_writes_with_a_warning_on_stderr(tmp_path, ckpt_path):
    out, target = tmp_path / "m.onnx", target_with(peepholes=WRONG)
    result = run("export", ckpt_path, "-o", out, "--target", target, "--allow-known-wrong")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: --allow-known-wrong: {target} computes --form native wrong")
    assert "wrote " in result.stdout and "warning" not in result.stdout
    assert metadata.read(str(out))["form"] == "native"


def test_quiet_keeps_the_warning(tmp_path, ckpt_path):
    target = target_with(peepholes=CPU)
    result = CliRunner().invoke(cli, ["-q", "export", str(ckpt_path), "-o", str(tmp_path / "m.onnx"),
                                      "--target", target])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (f"warning: {target} and --form native of this model: LSTM with P: on CPU; use --form "
                             f"{choose_form(target, True)} (what --form auto --target {target} picks)\n")


def test_a_new_form_row_is_a_new_cli_choice(tmp_path, ckpt_path):
    """In a fresh process: one row added to FORMS, then the CLI offers it, exports it and names it."""
    out = tmp_path / "twin.onnx"
    script = textwrap.dedent(f"""
        import dataclasses
        from lstm_onnx.exporters import forms
        forms.FORMS["twin"] = dataclasses.replace(forms.FORMS["decomposed"], name="twin", summary="Scan again")
        from click.testing import CliRunner
        from lstm_onnx.cli.main import cli
        print(CliRunner().invoke(cli, ["export", "-h"]).output)
        result = CliRunner().invoke(cli, ["export", {str(ckpt_path)!r}, "-o", {str(out)!r}, "--form", "twin"])
        print(result.output)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[native|decomposed|unrolled|twin|auto]" in proc.stdout and "twin: Scan again." in proc.stdout
    assert "form twin" in proc.stdout
    assert metadata.read(str(out))["form"] == "twin"
