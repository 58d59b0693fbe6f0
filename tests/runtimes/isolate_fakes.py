"""Runners that fail as a native runtime can: by a signal, by exiting, by hanging, by raising. In the parent a
test adds ROWS to the registry (monkeypatch); in verify's child processes `register` does, named by
runtimes.isolate.PRELOAD_ENV. `fake-hang` writes its pid and its helper process's to FAKE_PIDS_ENV's file."""
import os
import resource
import signal
import subprocess
import time

from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.base import Runner, RunnerRefused, RunnerUnavailable

FAKE_PIDS_ENV = "LSTM_ONNX_FAKE_PIDS"


def _segv():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test's folder
    os.kill(os.getpid(), signal.SIGSEGV)


def _abort():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.abort()


def _hang():
    helper = subprocess.Popen(["sleep", "600"])  # a runtime's helper process: killed with its group
    with open(os.environ[FAKE_PIDS_ENV], "w") as fh:
        fh.write(f"{os.getpid()} {helper.pid}")
    time.sleep(600)


def _raise(exc):
    def fault():
        raise exc
    return fault


FAULTS = {
    "fake-segv": _segv,
    "fake-abort": _abort,
    "fake-exit": lambda: os._exit(7),
    "fake-hang": _hang,
    "fake-raise": _raise(ZeroDivisionError("weights\nsecond line")),
    "fake-refuse": _raise(RunnerRefused("this runtime refuses LSTM with P")),
    "fake-unavailable": _raise(RunnerUnavailable("fakert is not installed")),
}


class FaultyRunner(Runner):
    def __init__(self, request: registry.Request, fault):
        super().__init__()
        self._inputs, self._fault = list(request.input_names), fault

    def _input_names(self):
        return self._inputs

    def _infer(self, feeds):
        self._fault()
        return {}


ROWS = [registry.RunnerInfo(name, None, lambda req, f=fault: FaultyRunner(req, f), verify_default=False)
        for name, fault in FAULTS.items()]


def register() -> None:
    registry.RUNNERS.update({row.name: row for row in ROWS})
