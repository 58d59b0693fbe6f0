"""What the HTTP harness shares: the invariant every response must meet, a watch on the server's log, a real
uvicorn server in a thread (our protocol, a real socket), and raw requests over that socket."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time

from lstm_onnx.serving.settings import ServeSettings

ERROR_KEYS = {"code", "message", "expected"}


def problem(status: int, content_type: str, body: bytes) -> str | None:
    """None when the response meets the invariant: 2xx, or 4xx/503 with {"error": {"code", "message"[,
    "expected"]}} as JSON; else what is wrong."""
    if 200 <= status < 300:
        return None
    if not (400 <= status < 500 or status == 503):
        return f"status {status}: {body[:200]!r}"
    if not content_type.lower().startswith("application/json"):
        return f"{status} with content-type {content_type!r}: {body[:200]!r}"
    try:
        error = json.loads(body)["error"]
        shaped = set(error) <= ERROR_KEYS and all(isinstance(error.get(k, ""), str) for k in ERROR_KEYS)
    except (ValueError, KeyError, TypeError):
        shaped = False
    return None if shaped and error.get("code") and error.get("message") else f"{status} body {body[:200]!r}"


class LogWatch(logging.Handler):
    """Every record at WARNING or above from uvicorn, our modules and asyncio; `tracebacks()` are the ones that
    carry an exception or are errors."""

    NAMES = ("", "uvicorn", "uvicorn.error", "asyncio")

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[0].__name__})" if r.exc_info else "")
                for r in self.records if r.exc_info or r.levelno >= logging.ERROR]

    @contextlib.contextmanager
    def attached(self):
        loggers = [logging.getLogger(n) for n in self.NAMES]
        for lg in loggers:
            lg.addHandler(self)
        try:
            yield self
        finally:
            for lg in loggers:
                lg.removeHandler(self)


class Live:
    """A uvicorn server on 127.0.0.1 in a thread, as `lstm-pipeline serve` configures it."""

    def __init__(self, settings: ServeSettings):
        import uvicorn

        from lstm_onnx.serving.app import create_app
        from lstm_onnx.serving.server import config_for

        self.settings = settings
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(config_for(settings, create_app(settings), log_level="warning"))
        self.log = LogWatch()
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Live":
        self._attached = self.log.attached()
        self._attached.__enter__()
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self._attached.__exit__(*exc)
        self.sock.close()

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def exchange(self, raw: bytes, timeout: float = 5.0, shut_write: bool = False) -> "Reply":
        """Send raw bytes, read until the server closes or a whole response is in."""
        with self.connect(timeout) as s:
            with contextlib.suppress(OSError):  # the server may answer and close before it has it all
                s.sendall(raw)
                if shut_write:
                    s.shutdown(socket.SHUT_WR)
            return read_reply(s)

    def healthz(self) -> int:
        return self.exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status


class Reply:
    def __init__(self, status: int | None, headers: dict, body: bytes, elapsed: float):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def problem(self) -> str | None:
        if self.status is None:
            return "no response"
        return problem(self.status, self.headers.get("content-type", ""), self.body)

    def json(self):
        return json.loads(self.body)


def read_reply(s: socket.socket) -> Reply:
    """One HTTP response off the socket (status None if the server closed or went quiet without one)."""
    start, data = time.monotonic(), b""
    try:
        while b"\r\n\r\n" not in data or len(data) < _expected_size(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return Reply(None, {}, data, elapsed)
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return Reply(int(lines[0].split()[1]), headers, body, elapsed)


def _expected_size(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(data) + 1  # no length: read to the close


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
