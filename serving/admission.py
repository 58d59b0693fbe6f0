"""What one server lets in at once, counted where the bytes arrive (serving/protocol.py): open connections, and
the bytes of request bodies being read or handled, over all connections together.

uvicorn's own `limit_concurrency` is not used: it still reads the request head and buffers the body of a request
it turns away, answers in plain text without Retry-After, and counts probes like any request, so a liveness
probe fails exactly when the server is busy. Here a request on one connection too many is refused from its head
(503 + Retry-After + close, in its protocol's error shape) before any of its body is read, and a probe
(GET/HEAD of /healthz, /readyz, /v2/health/*) is still answered, then its connection closed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

from lstm_onnx.serving.auth import OPEN_PATHS
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.request_core import retry_later

ABUSE_LIMITS = ("max_sessions_per_client", "max_connections", "max_buffered_bytes", "max_parse_queue",
                "queue_timeout_s")
PROBES = frozenset(path.encode() for path in OPEN_PATHS)  # as the request line holds them
# glibc keeps freed heap memory for reuse; after bodies of this many bytes were released the server hands the
# free pages back (malloc_trim), else RSS stays at its peak after a body flood.
TRIM_AFTER_BYTES = 32 << 20
log = logging.getLogger("uvicorn.error")


class Admission:
    """The counts one server's connections share (one event loop: no locks)."""

    def __init__(self, max_connections: int, max_buffered_bytes: int, on_refused=None):
        """on_refused(reason=...): told of each refusal (the server's lstm_rejected_total)."""
        self.max_connections, self.max_buffered = max_connections, max_buffered_bytes
        self.on_refused = on_refused or (lambda **reason: None)
        self.connections = 0  # connections that have been let in (at their first request)
        self.buffered = 0  # body bytes reserved by requests still running
        self.freed = 0  # body bytes released since the last trim
        self.trim = malloc_trim()

    def admit(self) -> bool:
        if self.connections >= self.max_connections:
            return False
        self.connections += 1
        return True

    def leave(self) -> None:
        self.connections -= 1

    def reserve(self, size: int) -> bool:
        if self.buffered + size > self.max_buffered:
            return False
        self.buffered += size
        return True

    def release(self, size: int, loop) -> None:
        self.buffered -= size
        self.freed += size
        if self.trim is not None and self.freed >= TRIM_AFTER_BYTES and self.buffered == 0:
            self.freed = 0
            # later and off the loop: the bodies are dropped once their request's task ends, and a trim of a
            # big heap takes milliseconds
            loop.call_later(0.5, loop.run_in_executor, None, self.trim, 0)

    def too_many_connections(self) -> ApiError:
        self.on_refused(reason="connection_limit")
        return retry_later("too_many_connections", f"the server has {self.max_connections} connections open, its "
                           "limit", "retry after the Retry-After header's seconds, or reuse an open connection")

    def budget_full(self, size: int) -> ApiError:
        self.on_refused(reason="body_budget")
        return retry_later("body_budget_full", f"request bodies being read hold {self.buffered} bytes; this "
                           f"one's {size} would pass the server's budget of {self.max_buffered}")


def malloc_trim():
    """glibc's malloc_trim, or None where there is none (not Linux, or another libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
