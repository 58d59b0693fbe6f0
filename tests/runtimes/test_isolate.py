"""verify --isolate (runtimes/isolate.py): a runner in its own process gives what it gives in-process, and one
that segfaults, aborts, exits, hangs or raises is that runner's one-line error while the others still run."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.base import RunnerError, RunnerRefused, RunnerUnavailable, error_message
from lstm_onnx.runtimes.isolate import PRELOAD_ENV, isolated_runner
from lstm_onnx.runtimes.verify import VerifyOptions, model_feeds, verify_model
from tests.runtimes import isolate_fakes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    where = tmp_path_factory.mktemp("isolate")
    ckpt = random_checkpoint(4, 8, seed=3)
    ckpt.save(where / "model.pt")
    export_form(ckpt, "native", where / "model.onnx")
    return where / "model.pt", where / "model.onnx"


@pytest.fixture(scope="module")
def feeds(files):
    import onnx

    return model_feeds(onnx.load(str(files[1])), 3, 11, 0)


@pytest.fixture
def fakes(monkeypatch):
    """The fake runners in this registry and, through PRELOAD_ENV, in every child's."""
    for row in isolate_fakes.ROWS:
        monkeypatch.setitem(registry.RUNNERS, row.name, row)
    monkeypatch.setenv(PRELOAD_ENV, "tests.runtimes.isolate_fakes:register")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _request(model, feeds):
    return registry.Request(model, None, list(feeds))


def test_isolated_ort_cpu_gives_what_it_gives_in_process(files, feeds):
    _, model = files
    with registry.make("onnxruntime-cpu", _request(model, feeds)) as here:
        expected = here.infer(feeds)
    with isolated_runner("onnxruntime-cpu", _request(model, feeds)) as there:
        actual = there.infer(feeds)
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].dtype == expected[name].dtype and np.array_equal(actual[name], expected[name])
    assert there.name == "onnxruntime-cpu"
    assert there.placements == here.placements and "LSTM" in {p.op_type for p in there.placements}
    assert there.placement_problems == here.placement_problems
    assert (there.requested_provider, there.provider) == (here.requested_provider, here.provider)


@pytest.mark.parametrize("runner, error, message", [
    ("fake-segv", RunnerError, "crashed (signal SIGSEGV)"),
    ("fake-abort", RunnerError, "crashed (signal SIGABRT)"),
    ("fake-exit", RunnerError, "its process exited with code 7 before it reported a result"),
    ("fake-raise", RunnerError, "ZeroDivisionError: weights"),
    ("fake-refuse", RunnerRefused, "this runtime refuses LSTM with P"),
    ("fake-unavailable", RunnerUnavailable, "fakert is not installed"),
])
def test_a_child_fault_is_the_runners_one_line_error(fakes, files, feeds, runner, error, message):
    _, model = files
    with pytest.raises(error) as caught:
        with isolated_runner(runner, _request(model, feeds)) as r:
            r.infer(feeds)
    assert type(caught.value) is error and error_message(caught.value) == message


def test_in_process_and_isolated_errors_read_the_same(fakes, files, feeds):
    _, model = files
    with pytest.raises(ZeroDivisionError) as here:
        with registry.make("fake-raise", _request(model, feeds)) as r:
            r.infer(feeds)
    with pytest.raises(RunnerError) as there:
        with isolated_runner("fake-raise", _request(model, feeds)) as r:
            r.infer(feeds)
    assert error_message(there.value) == error_message(here.value)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie no one has reaped yet is dead
    except FileNotFoundError:
        return True


def test_a_hanging_runner_is_killed_with_its_helpers_and_the_run_goes_on(fakes, files, feeds, tmp_path,
                                                                         monkeypatch):
    _, model = files
    pids = tmp_path / "pids"
    monkeypatch.setenv(isolate_fakes.FAKE_PIDS_ENV, str(pids))
    with registry.make("onnxruntime-cpu", _request(model, feeds)) as r:
        np.savez(tmp_path / "expected.npz", **r.infer(feeds))  # saved outputs: no baseline process to time
    np.savez(tmp_path / "in.npz", **feeds)
    start = time.monotonic()
    report = verify_model(model, options=VerifyOptions(runners=("fake-hang",), isolate=True, runner_timeout=2,
                                                       inputs=tmp_path / "in.npz",
                                                       expected=tmp_path / "expected.npz"))
    assert time.monotonic() - start < 30
    assert report.parity.errors == {"fake-hang": "timed out after 2 s (its process was killed)"}
    assert report.exit_code == 1
    deadline = time.monotonic() + 5
    while not all(_gone(int(p)) for p in pids.read_text().split()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(int(p)) for p in pids.read_text().split())


def test_verify_reports_crashes_per_runner_and_compares_the_rest(fakes, files):
    _, model = files
    report = verify_model(model, options=VerifyOptions(runners=("onnxruntime-cpu", "fake-segv", "fake-exit"),
                                                       baseline="onnx-reference", isolate=True))
    assert report.parity.reference == "onnx-reference"
    assert [r.runner for r in report.parity.rows] == ["onnxruntime-cpu"] and report.parity.rows[0].passed
    assert report.parity.errors == {
        "fake-segv": "crashed (signal SIGSEGV)",
        "fake-exit": "its process exited with code 7 before it reported a result"}
    assert report.status == "FAILED" and report.exit_code == 1
    assert "LSTM" in {p.op_type for p in report.placements["onnxruntime-cpu"]}


def test_a_refusal_in_the_child_is_still_a_skip(fakes, files):
    _, model = files
    report = verify_model(model, options=VerifyOptions(runners=("fake-refuse",), isolate=True))
    assert report.parity.skipped == {"fake-refuse": "refused (this runtime refuses LSTM with P)"}
    assert report.status == "NOTHING COMPARED" and report.exit_code == 3


def test_a_baseline_that_crashes_is_verifys_one_line_error(fakes, files):
    _, model = files
    with pytest.raises(ValueError, match=r"^baseline fake-segv cannot run this model: crashed \(signal SIGSEGV\); "
                                         r"choose another with --baseline$"):
        verify_model(model, options=VerifyOptions(runners=("onnxruntime-cpu",), baseline="fake-segv", isolate=True))


def test_a_checkpoint_needs_its_path_to_cross(files):
    ckpt, model = files
    from lstm_onnx.pipeline.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="VerifyOptions.checkpoint"):
        verify_model(model, load_checkpoint(ckpt), VerifyOptions(runners=("numpy",), isolate=True))


def _cli(*args):
    from lstm_onnx.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _same_parity(isolated: dict, here: dict) -> None:
    assert isolated["rows"] == here["rows"] and isolated["reference"] == here["reference"]
    assert (isolated["status"], isolated["errors"], isolated["skipped"]) == (here["status"], here["errors"],
                                                                             here["skipped"])
    assert isolated["placement"] == here["placement"]


def test_cli_isolate_gives_the_in_process_report(files):
    _, model = files
    args = ["verify", model, "--runner", "onnx-reference", "--runner", "onnxruntime-cuda", "--json"]
    here, isolated = _cli(*args), _cli(*args, "--isolate", "--runner-timeout", 120)
    assert here.exit_code == isolated.exit_code == 0, isolated.output
    _same_parity(json.loads(isolated.output), json.loads(here.output))


@pytest.mark.slow
def test_cli_isolate_with_a_checkpoint_loads_it_in_each_child(files):
    ckpt, model = files
    args = ["verify", ckpt, model, "--runner", "numpy", "--runner", "onnxruntime-cpu", "--json"]
    here, isolated = _cli(*args), _cli(*args, "--isolate")
    assert here.exit_code == isolated.exit_code == 0, isolated.output
    data = json.loads(isolated.output)
    assert data["reference"] == "torch" and [r["runner"] for r in data["rows"]] == ["numpy", "onnxruntime-cpu"]
    _same_parity(data, json.loads(here.output))


def test_runner_timeout_without_isolate_is_one_line(files):
    _, model = files
    result = _cli("verify", model, "--runner-timeout", 5)
    assert result.exit_code == 1 and "--runner-timeout needs --isolate" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
