"""Find and run the `tritonserver` binary that nvidia-pytriton bundles (`make triton-venv`), CPU only.

    install = find_tritonserver()                     # raises TritonNotFound(reason)
    with TritonServer("repo", install) as server:     # free loopback ports; waits for /v2/health/ready
        client = tritonclient.http.InferenceServerClient(server.http_url)

The wheel ships the python backend without its stub; the stub for the venv's Python version is copied into a
backends folder assembled per server. The stub embeds that Python, so it needs libpython's folder on
LD_LIBRARY_PATH (else it dies on `_thread.RLock`) and the venv's bin first on PATH (its site-packages: numpy,
onnxruntime).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VENV_ENV = "LSTM_TRITON_VENV"  # another venv with nvidia-pytriton installed
DEFAULT_VENV = Path(__file__).resolve().parents[1] / ".venv-triton"  # the repo's, in an editable install


class TritonNotFound(RuntimeError):
    """No runnable tritonserver here; str() says what is missing and how to get it."""


class TritonServerError(RuntimeError):
    """tritonserver did not start or did not become ready; str() is one line ending with its log's tail."""


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    python: Path  # the venv's python, whose version picks the stub
    python_version: str  # "3.11"
    libdir: str  # the folder of libpython3.x.so

    @property
    def dist(self) -> Path:  # pytriton/tritonserver
        return self.binary.parents[1]

    @property
    def libs(self) -> Path:  # the wheel's bundled shared libraries
        return self.dist.parents[1] / "nvidia_pytriton.libs"

    @property
    def stub(self) -> Path:
        return self.dist / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"

    def env(self) -> dict:
        """Our environment with the bundled libraries, libpython and the venv's bin in front."""
        env = dict(os.environ)
        libs = [str(self.libs), self.libdir]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        env["PATH"] = os.pathsep.join([str(self.python.parent), env.get("PATH", "")])
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)  # ours (the main venv's) would shadow the stub's numpy
        return env

    def run_problem(self) -> str | None:
        """Why the binary does not run on this machine (a missing system library, another CPU), or None."""
        try:
            done = subprocess.run([str(self.binary), "--help"], capture_output=True, text=True, timeout=60,
                                  env=self.env())
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{self.binary} does not start: {exc}"
        if "--model-repository" in done.stdout + done.stderr:
            return None
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"{self.binary} does not run here (exit {done.returncode}): {lines[0] if lines else 'no output'}"


def find_tritonserver(venv: str | os.PathLike | None = None, check_runs: bool = True) -> TritonInstall:
    """The bundled server of `venv` (default: $LSTM_TRITON_VENV, else the repo's .venv-triton); with
    `check_runs`, also that the binary starts here (`--help`, a fraction of a second)."""
    venv = Path(venv or os.environ.get(VENV_ENV) or DEFAULT_VENV)
    how = "run `make triton-venv` (or set LSTM_TRITON_VENV to a venv with nvidia-pytriton==0.7.0)"
    python = venv / "bin" / "python"
    if not python.exists():
        raise TritonNotFound(f"no venv at {venv}: {how}")
    try:
        probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
        found = json.loads(probe.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise TritonNotFound(f"{python} does not run or has no nvidia-pytriton ({type(exc).__name__}): {how}") from None
    if found["dist"] is None:
        raise TritonNotFound(f"{venv} has no nvidia-pytriton: {how}")
    install = TritonInstall(Path(found["dist"]) / "bin" / "tritonserver", python, found["version"], found["libdir"])
    for path, what in ((install.binary, "the tritonserver binary"), (install.stub, "the python backend stub for "
                       f"Python {install.python_version}"), (install.dist / "backends" / "python" /
                       "libtriton_python.so", "the python backend")):
        if not path.exists():
            raise TritonNotFound(f"{path} is missing ({what}): reinstall with `make triton-venv`")
    problem = install.run_problem() if check_runs else None
    if problem:
        raise TritonNotFound(problem)
    return install


_PROBE = """
import importlib.util, json, os, sys, sysconfig
spec = importlib.util.find_spec("pytriton")
dist = os.path.join(os.path.dirname(spec.origin), "tritonserver") if spec else None
print(json.dumps({"dist": dist, "version": "%d.%d" % sys.version_info[:2], "libdir": sysconfig.get_config_var("LIBDIR")}))
"""


_ERROR_PREFIX = re.compile(r"E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")  # glog's "E1203 09:59:14.40 15196 server.cc:241] "
_CPU_NOISE = ("CudaDriverHelper has not been initialized",)  # logged on every machine without a GPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """tritonserver on 127.0.0.1 serving `repository`, for the length of a `with` block."""

    def __init__(self, repository, install: TritonInstall | None = None, ready_timeout: float = 60):
        self.repository = Path(repository)
        self.install = install or find_tritonserver()
        self.ready_timeout = ready_timeout
        self.http_port = self.grpc_port = None
        self.proc = None
        self._work = None
        self._log = None

    @property
    def http_url(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return f"127.0.0.1:{self.http_port}"

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise TritonServerError(f"{self.repository} is no model repository (no <name>/config.pbtxt in it)")
        self._work = Path(tempfile.mkdtemp(prefix="tritonserver."))
        backends = self._assemble_backends(self._work / "backends")
        self.http_port, self.grpc_port = free_port(), free_port()
        cmd = [str(self.install.binary), "--model-repository", str(self.repository.resolve()),
               "--backend-directory", str(backends), "--cache-directory", str(self.install.dist / "caches"),
               "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
               "--allow-metrics", "false", "--exit-timeout-secs", "10"]
        self._log = open(self._work / "tritonserver.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.install.env(),
                                     start_new_session=True)  # its own group: a Ctrl-C of ours is not its
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _assemble_backends(self, folder: Path) -> Path:
        python = folder / "python"
        python.mkdir(parents=True)
        source = self.install.dist / "backends" / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(source / name, python / name)
        shutil.copy2(self.install.stub, python / "triton_python_backend_stub")
        return folder

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TritonServerError(f"tritonserver exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TritonServerError(f"tritonserver not ready after {self.ready_timeout:g} s: {self.log_tail()}")

    def log_text(self) -> str:
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        return (self._work / "tritonserver.log").read_text(errors="replace")

    def log_tail(self, lines: int = 4) -> str:
        """The log's last error lines (else its last lines) joined on one line: what a one-line error carries."""
        text = [line.strip() for line in self.log_text().splitlines()
                if line.strip() and not line.startswith(("|", "+"))]  # the option tables at start-up
        errors = [_ERROR_PREFIX.sub("", line) for line in text
                  if _ERROR_PREFIX.match(line) or "ERROR" in line or line.startswith("error:")]
        errors = [line for line in errors if not any(noise in line for noise in _CPU_NOISE)]
        return " | ".join((errors or text)[-lines:]) or "(empty log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Triton unloads its models and exits within --exit-timeout-secs
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the stubs too: they are in its process group
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
