"""What a documented command may print on stderr: nothing but its own one-line error. A Python warning, a
library's log line (onnxruntime's `[W:onnxruntime:...]`, OpenCV's `[ WARN:...]`, a root-logger `WARNING:root:`)
or a traceback there is foreign output. The server is the one exception: uvicorn's `INFO:` lines (started,
listening on, shutting down) are how a server says where it listens."""
from __future__ import annotations

import re

UVICORN_INFO = re.compile(r"^INFO:\s")


def foreign_lines(stderr: str, server: bool = False) -> list[str]:
    """The lines of `stderr` that a documented command must not print."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [line for line in lines if not (server and UVICORN_INFO.match(line))]


def quiet_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` with every Python warning an error, as `python -W error` does, in child processes too."""
    return dict(env, PYTHONWARNINGS="error")
