"""One runner in a child process (`verify --isolate`): a runtime that segfaults, aborts, exits, leaks or hangs
takes down its child, never verify.

The parent writes the feeds (.npz) and the job (JSON) to a temp folder and starts `python -m
lstm_onnx.runtimes.isolate FOLDER` in its own session; the child builds the runner from the registry, runs it
and writes the outputs (.npz) and a result (JSON: the runner's placement, or its refusal or error). The parent
maps what happened to what an in-process runner raises: RunnerRefused and RunnerUnavailable as themselves (so
verify still skips), an error as a RunnerError with the child's one line, a child killed by a signal as
"crashed (signal SIGSEGV)", and one past its timeout is killed (its whole process group): "timed out after N s".

A checkpoint crosses as a path and a loader, "module:function", that the caller names: runtimes never import
the training layer (docs/DESIGN.md), so the caller that loaded the checkpoint says how the child loads it.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError, RunnerRefused, RunnerUnavailable, error_message

DEFAULT_TIMEOUT = 300.0  # seconds a runner's child may take: load, compile and run
# Tests only: modules ("module" or "module:function", comma-separated) the child imports (and calls) before it
# builds the runner, to register fake runners in its registry.
PRELOAD_ENV = "LSTM_ONNX_ISOLATE_PRELOAD"
JOB, FEEDS, OUTPUTS, RESULT, LOG = "job.json", "feeds.npz", "outputs.npz", "result.json", "child.log"
STATUS_ERRORS = {"refused": RunnerRefused, "unavailable": RunnerUnavailable, "error": RunnerError}


@dataclass
class Job:
    """What the child needs to build the runner: registry.Request's fields, with the checkpoint as a path."""

    runner: str
    model: str
    input_names: list[str]
    checkpoint: str | None = None
    checkpoint_loader: str | None = None  # "module:function" that loads `checkpoint` in the child
    provider_options: dict[str, dict] = field(default_factory=dict)
    allow_tf32: bool = False


class IsolatedRunner(Runner):
    """The runner `job.runner`, run in a child process by `infer`. After it ran, it carries what verify reads
    from a runner: name, placements, placement_problems, requested_provider, provider, uses_tf32."""

    def __init__(self, job: Job, timeout: float = DEFAULT_TIMEOUT):
        super().__init__()
        self.job, self.timeout, self.name = job, timeout, job.runner
        self.placements = self.placement_problems = self.requested_provider = self.provider = None
        self.uses_tf32 = False

    def _input_names(self):
        return list(self.job.input_names)

    def _infer(self, feeds):
        outputs, info = run_isolated(self.job, feeds, self.timeout)
        self.name = info.get("name") or self.name
        self.requested_provider, self.provider = info.get("requested_provider"), info.get("provider")
        self.uses_tf32 = bool(info.get("uses_tf32"))
        self.placement_problems = info.get("placement_problems")
        if info.get("placements"):
            from lstm_onnx.runtimes.placement import NodePlacement

            self.placements = [NodePlacement(*p) for p in info["placements"]]
        return outputs


def isolated_runner(name: str, request, checkpoint=None, loader: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> IsolatedRunner:
    """An IsolatedRunner for registry.make(name, request). A model given as bytes is written beside the feeds;
    a request with a checkpoint object needs its path and loader (ValueError otherwise)."""
    if request.ckpt is not None and not (checkpoint and loader):
        raise ValueError("a runner in its own process loads the checkpoint itself: give its path and a loader "
                         "(VerifyOptions.checkpoint and checkpoint_loader)")
    model = request.model if isinstance(request.model, (bytes, bytearray)) else str(Path(request.model).resolve())
    job = Job(name, model, list(request.input_names), str(Path(checkpoint).resolve()) if checkpoint else None,
              loader, dict(request.provider_options or {}), bool(request.allow_tf32))
    return IsolatedRunner(job, timeout)


def run_isolated(job: Job, feeds: dict[str, np.ndarray], timeout: float = DEFAULT_TIMEOUT):
    """(outputs, info) of the runner run on `feeds` in a child process; raises as the runner would have
    (RunnerRefused, RunnerUnavailable, RunnerError), or RunnerError if the child crashed or timed out."""
    with tempfile.TemporaryDirectory(prefix="lstm-onnx-isolate-") as tmp:
        folder = Path(tmp)
        spec = asdict(job)
        if isinstance(job.model, (bytes, bytearray)):
            (folder / "model.onnx").write_bytes(job.model)
            spec["model"] = str(folder / "model.onnx")
        spec["feeds"] = _write_arrays(folder / FEEDS, feeds)
        (folder / JOB).write_text(json.dumps(spec))
        code = _run_child(folder, timeout)
        if not (folder / RESULT).exists():
            raise RunnerError(_death(code, folder / LOG))
        info = json.loads((folder / RESULT).read_text())
        status = info.get("status")
        if status in STATUS_ERRORS:
            raise STATUS_ERRORS[status](info.get("message", ""))
        return _read_arrays(folder / OUTPUTS, info["outputs"]), info


def _run_child(folder: Path, timeout: float) -> int:
    """The child's exit code (negative: the signal that killed it). Past `timeout` its process group is
    killed: RunnerError."""
    with open(folder / LOG, "wb") as log:  # a file, not a pipe: a chatty runtime can never block on it
        proc = subprocess.Popen([sys.executable, "-m", "lstm_onnx.runtimes.isolate", str(folder)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"timed out after {timeout:g} s (its process was killed)") from None
    finally:
        if proc.poll() is None:  # timed out, or the parent was interrupted: the runtime's helpers go too
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _death(code: int, log: Path) -> str:
    """One line for a child that ended without a result."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"crashed (signal {name}" + ("; out of memory?)" if -code == signal.SIGKILL else ")")
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f"its process exited with code {code} before it reported a result" + (f": {lines[-1][:200]}"
                                                                                  if lines else "")


def _write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    """Arrays stored by position (arr_0, ...), so that any name survives; returns the names in order."""
    with open(path, "wb") as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays.values()])
    return list(arrays)


def _read_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[f"arr_{i}"] for i, name in enumerate(names)}


# -- the child

def _call(spec: str, *args):
    module, _, function = spec.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, function)(*args) if function else loaded


def _run_job(folder: Path) -> dict:
    from lstm_onnx.runtimes import registry

    job = json.loads((folder / JOB).read_text())
    for spec in filter(None, os.environ.get(PRELOAD_ENV, "").split(",")):
        _call(spec.strip())
    ckpt = _call(job["checkpoint_loader"], job["checkpoint"]) if job.get("checkpoint") else None
    feeds = _read_arrays(folder / FEEDS, job["feeds"])
    runner = registry.make(job["runner"], registry.Request(job["model"], ckpt, job["input_names"],
                                                          job["provider_options"], job["allow_tf32"]))
    with runner:
        outputs = runner.infer(feeds)
    names = _write_arrays(folder / OUTPUTS, outputs)
    placements = getattr(runner, "placements", None)
    return dict(status="ok", outputs=names, name=runner.name, uses_tf32=bool(getattr(runner, "uses_tf32", False)),
                placements=[[p.node, p.op_type, p.provider] for p in placements] if placements else None,
                placement_problems=_texts(getattr(runner, "placement_problems", None)),
                requested_provider=_text(getattr(runner, "requested_provider", None)),
                provider=_text(getattr(runner, "provider", None)))


def _text(value):
    return None if value is None else str(value)


def _texts(values):
    return None if values is None else [str(v) for v in values]


def child_main(folder: str) -> None:
    """Run the job in `folder`, write its result, and leave at once: a runtime that crashes or hangs while
    Python tears down has nothing left to spoil."""
    folder = Path(folder)
    try:
        result = _run_job(folder)
    except RunnerRefused as exc:
        result = dict(status="refused", message=str(exc))
    except RunnerUnavailable as exc:
        result = dict(status="unavailable", message=str(exc))
    except Exception as exc:  # any runtime's own error type, reported in one line as verify would
        result = dict(status="error", message=error_message(exc))
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(folder / RESULT)  # the parent reads a result whole or not at all
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    child_main(sys.argv[1])
