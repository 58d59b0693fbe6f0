"""Polygraphy's JSON files: ours read back by Polygraphy's own loaders and its CLI, and the reverse."""
import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.runtimes.polygraphy_io import read_inputs_json, read_outputs_json, write_inputs_json, write_outputs_json
from lstm_onnx.runtimes.verify import VerifyOptions, verify_model

RNG = np.random.default_rng(7)
FEEDS = {"x": RNG.normal(size=(2, 5, 3)).astype(np.float32), "n": np.array([5, 3], np.int64)}
OUTS = {"y": RNG.normal(size=(2, 4)).astype(np.float32), "hn": RNG.normal(size=(1, 2, 8)).astype(np.float64)}
POLYGRAPHY = Path(sys.executable).with_name("polygraphy")


def polygraphy():
    return pytest.importorskip("polygraphy", reason="Polygraphy is not installed (pip install polygraphy)")


def _same(got: dict, want: dict):
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)


def test_polygraphy_loads_our_outputs(tmp_path):
    polygraphy()
    from polygraphy.comparator import RunResults

    write_outputs_json(tmp_path / "out.json", "ours", [OUTS, {"y": OUTS["y"] * 2}])
    results = RunResults.load(str(tmp_path / "out.json"))
    assert list(results.keys()) == ["ours"]
    first, second = results["ours"]
    assert first.runner_name == "ours"
    _same(dict(first.items()), OUTS)
    np.testing.assert_array_equal(second["y"], OUTS["y"] * 2)


def test_polygraphy_loads_our_inputs(tmp_path):
    polygraphy()
    from polygraphy.json import load_json

    write_inputs_json(tmp_path / "in.json", FEEDS)
    loaded = load_json(str(tmp_path / "in.json"))
    assert len(loaded) == 1
    _same(dict(loaded[0]), FEEDS)


def test_we_read_what_polygraphy_saves(tmp_path):
    polygraphy()
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json

    second = {"x": FEEDS["x"] + 1, "n": FEEDS["n"]}
    save_json([FEEDS, second], str(tmp_path / "in.json"))
    _same(read_inputs_json(tmp_path / "in.json"), FEEDS)
    _same(read_inputs_json(tmp_path / "in.json", iteration=1), second)
    results = RunResults()
    results.append(("trt-runner", [IterationResult(OUTS, runtime=0.1, runner_name="trt-runner")]))
    results.append(("onnxrt-runner", [IterationResult({"y": OUTS["y"] + 1}, runner_name="onnxrt-runner")]))
    results.save(str(tmp_path / "out.json"))
    got = read_outputs_json(tmp_path / "out.json")
    assert list(got) == ["trt-runner", "onnxrt-runner"]
    _same(got["trt-runner"][0], OUTS)
    np.testing.assert_array_equal(got["onnxrt-runner"][0]["y"], OUTS["y"] + 1)


def test_writes_are_atomic_replacements(tmp_path):
    target = tmp_path / "out.json"
    write_outputs_json(target, "a", OUTS)
    write_outputs_json(target, "b", {"y": OUTS["y"]})
    assert list(read_outputs_json(target)) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left beside it


def _npy(array) -> str:
    buf = io.BytesIO()
    np.save(buf, array)
    return base64.b64encode(buf.getvalue()).decode()


def _inputs(array_field) -> list:
    return [{"x": {"array": array_field, "polygraphy_class": "ndarray"}}]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a JSON file"),
    (json.dumps({"x": 1}), "is not Polygraphy inputs"),
    (json.dumps([{"x": [1, 2]}]), "input 'x' is not a Polygraphy array"),
    (json.dumps(_inputs("@@not base64@@")), "is not valid base64"),
    (json.dumps(_inputs(base64.b64encode(b"not an npy").decode())), "not a readable np.save payload"),
    (json.dumps(_inputs(_npy(np.zeros((1000, 1000)))[:200])), "header says [1000, 1000] float64"),
    (json.dumps([{"x": {"tensor": "AAAA", "polygraphy_class": "Tensor"}}]), "is a torch Tensor"),
    (json.dumps(_inputs(_npy(np.zeros(3)))), "there is no iteration 1"),
])
def test_malformed_inputs_are_one_line(tmp_path, content, message):
    (tmp_path / "in.json").write_text(content)
    with pytest.raises(ValueError) as err:
        read_inputs_json(tmp_path / "in.json", iteration=1 if "iteration" in message else 0)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    (json.dumps([]), "is not Polygraphy outputs"),
    (json.dumps({"lst": [["r"]], "polygraphy_class": "RunResults"}), "must be [runner name, [iteration"),
    (json.dumps({"lst": [["r", [{"outputs": 1}]]], "polygraphy_class": "RunResults"}),
     "runner 'r' iteration 0 is not a Polygraphy IterationResult"),
    (json.dumps({"lst": [], "polygraphy_class": "RunResults"}), "holds no runner's outputs"),
])
def test_malformed_outputs_are_one_line(tmp_path, content, message):
    (tmp_path / "out.json").write_text(content)
    with pytest.raises(ValueError) as err:
        read_outputs_json(tmp_path / "out.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_outputs_json(tmp_path / "nope.json")


# --- against the polygraphy CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lstm_onnx.bench.models import export_form, random_checkpoint

    return export_form(random_checkpoint(4, 8, seed=3), "native", tmp_path_factory.mktemp("pg") / "model.onnx")


def _polygraphy_cli(*args) -> subprocess.CompletedProcess:
    polygraphy()
    exe = str(POLYGRAPHY) if POLYGRAPHY.exists() else shutil.which("polygraphy")
    if not exe:
        pytest.skip("the polygraphy command is not installed")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)


def _perturb(path: Path, out: Path, delta: float) -> None:
    """A copy of a RunResults file with every output shifted by delta, through Polygraphy's own API."""
    from polygraphy.comparator import IterationResult, RunResults

    results, shifted = RunResults.load(str(path)), RunResults()
    for runner, iterations in results.items():
        shifted.append((runner, [IterationResult({n: a + np.asarray(delta, a.dtype) for n, a in it.items()},
                                                 runner_name=runner) for it in iterations]))
    shifted.save(str(out))


@pytest.mark.slow
def test_polygraphy_run_compares_against_our_outputs(model, tmp_path):
    polygraphy()
    report = verify_model(model, options=VerifyOptions(runners=("onnx-reference",), batch=3, seq=9,
                                                       save_inputs=tmp_path / "in.json",
                                                       save_outputs=tmp_path / "ours.json"))
    assert report.passed, report.to_table()
    ok = _polygraphy_cli("run", model, "--onnxrt", "--load-inputs", tmp_path / "in.json",
                         "--load-outputs", tmp_path / "ours.json")
    log = ok.stdout + ok.stderr
    assert ok.returncode == 0, log
    assert "vs. onnxruntime-cpu" in log and "PASSED | simple | All outputs matched" in log
    _perturb(tmp_path / "ours.json", tmp_path / "off.json", 1e-3)
    bad = _polygraphy_cli("run", model, "--onnxrt", "--load-inputs", tmp_path / "in.json",
                          "--load-outputs", tmp_path / "off.json")
    assert bad.returncode != 0 and "FAILED" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_verify_reads_polygraphy_saves(model, tmp_path):
    polygraphy()
    made = _polygraphy_cli("run", model, "--onnxrt", "--input-shapes", "x:[3,11,4]",
                           "--save-inputs", tmp_path / "in.json", "--save-outputs", tmp_path / "out.json")
    assert made.returncode == 0, made.stdout + made.stderr
    options = VerifyOptions(runners=("onnx-reference",), inputs=tmp_path / "in.json", expected=tmp_path / "out.json")
    report = verify_model(model, options=options)
    assert report.passed, report.to_table()
    assert report.parity.inputs == {"x": [3, 11, 4]} and report.parity.reference == "expected:out.json"
    _perturb(tmp_path / "out.json", tmp_path / "off.json", 1e-3)
    off = VerifyOptions(runners=("onnx-reference",), inputs=tmp_path / "in.json", expected=tmp_path / "off.json")
    report = verify_model(model, options=off)
    assert report.status == "FAILED"
    assert report.rows[0].max_abs == pytest.approx(1e-3, rel=1e-2)


def test_verify_refuses_a_file_of_several_runners(model, tmp_path):
    write_inputs_json(tmp_path / "in.json", {"x": np.zeros((1, 2, 4), np.float32)})
    from lstm_onnx.runtimes import polygraphy_io

    polygraphy_io._write(tmp_path / "out.json", {"polygraphy_class": "RunResults", "lst": [
        ["a", [{"outputs": {}, "polygraphy_class": "IterationResult"}]],
        ["b", [{"outputs": {}, "polygraphy_class": "IterationResult"}]]]})
    with pytest.raises(ValueError, match=r"outputs of 2 runners \(a, b\); save one"):
        verify_model(model, options=VerifyOptions(inputs=tmp_path / "in.json", expected=tmp_path / "out.json"))
