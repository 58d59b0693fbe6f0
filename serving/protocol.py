"""uvicorn's httptools protocol with the limits it lacks: a size limit on the request head, read timeouts for
the head and the body, caps on connections and on buffered body bytes (serving/admission.py), and a shutdown
that answers every request instead of waiting for a body or closing a kept-alive connection under a request.

uvicorn keeps growing a header while it arrives (four 128 MiB headers cost the server 560 MiB) and waits for a
stalled body forever, so these limits have to sit where the bytes arrive, before the ASGI app sees a request.
Every refusal is written in the API's JSON error shape, then the connection is closed.
"""
from __future__ import annotations

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from lstm_onnx.serving.admission import PROBES, Admission
from lstm_onnx.serving.hotpath import dumps
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocols import error_body
from lstm_onnx.serving.request_core import SHUTTING_DOWN


class HeadTooLarge(Exception):
    pass


class Refused(Exception):
    """Raised in a parser callback: httptools stops parsing, and data_received answers `error`."""

    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error


# How long an idle kept-alive connection stays open once shutdown starts. A request its client sent just before
# it saw the shutdown arrives in this window and is answered 503 instead of meeting a close. HTTP/1.1 leaves a
# race no server can close: a request sent at the very moment the connection closes (after this window, or on
# any idle close) is lost with the connection, and the client must retry it (for an idempotent request it may).
SHUTDOWN_LINGER_S = 0.5
# After a refusal the server stops sending and reads on, dropping what comes, for up to this long (nginx's
# lingering close): a client still sending its body would otherwise get a reset, which can destroy the refusal
# before the client reads it.
REFUSAL_LINGER_S = 2.0


def refusal(error: ApiError, path: str = "") -> bytes:
    """The refusal in the error shape of the protocol `path` speaks (v1's when the path is not in yet)."""
    body = dumps(error_body(error, path))
    head = [STATUS_LINE[error.status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
    head += [f"{k.lower()}: {v}\r\n".encode("latin-1") for k, v in error.headers.items()]
    return b"".join(head) + b"\r\n" + body


class LimitedProtocol(HttpToolsProtocol):
    """Subclassed per server by `protocol_for(settings)`, which sets the limits and the server's Admission."""

    max_head = 64 << 10
    max_body = 4 << 20
    head_timeout = 10.0
    body_timeout = 30.0
    admission: Admission

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.reading_head, self.head_bytes = True, 0
        self.admitted, self.draining, self.discarding = False, False, 0  # discarding: bytes dropped after a refusal
        # per request (a pipelined one is parsed while an earlier one runs): cycle -> [bytes reserved in the
        # admission budget, bytes arrived]; None: the request whose head is being read, before it has a cycle
        self.bodies: dict = {}
        self.running = None  # the cycle whose app task runs: the one whose response goes out next
        self.deferred = None  # (error, path): a refusal that waits for the earlier responses on this connection
        self.timer = self.loop.call_later(self.head_timeout, self.head_timed_out)  # a silent connection too

    def connection_lost(self, exc) -> None:
        self.cancel_timer()
        self.release_body()
        if self.admitted:
            self.admitted = False
            self.admission.leave()
        super().connection_lost(exc)

    def release_body(self, cycle=...) -> None:
        """Give back the budget of `cycle`'s body (every request's on this connection when not given)."""
        for key in list(self.bodies) if cycle is ... else [cycle]:
            reserved, _ = self.bodies.pop(key, (0, 0))
            if reserved:
                self.admission.release(reserved, self.loop)

    def _start_asgi_task(self, cycle, app) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        self.release_body(self.running)  # the request's task ends with its response, and its body with it
        super().on_response_complete()  # starts the next pipelined request, if one waits
        if self.deferred is not None and not self.pipeline and self.running.response_complete:
            error, path = self.deferred
            self.deferred = None
            self.refuse(error, path)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            self.discarding += len(data)
            if self.discarding > self.max_body + self.max_head:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self.reading_head:
            if self.timer is None:  # the first bytes of a request on a kept-alive connection
                self.timer = self.loop.call_later(self.head_timeout, self.head_timed_out)
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                return self.refuse_head()
            if isinstance(exc.__context__, Refused):
                return self.refuse(exc.__context__.error)
            self.logger.warning("Invalid HTTP request received.")
            return self.refuse(ApiError(400, "bad_request", f"not a valid HTTP/1.1 request ({exc})",
                                        "an HTTP/1.1 request"))
        if self.reading_head and self.head_bytes > self.max_head:  # still no end of the head in sight
            self.refuse_head()

    # parser callbacks
    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head:
            raise HeadTooLarge  # httptools stops parsing and raises HttpParserCallbackError from it
        reserved = self.admit()
        self.reading_head = False
        self.cancel_timer()
        super().on_headers_complete()
        self.bodies[self.cycle] = [reserved, 0]
        if not self.admitted:  # a probe past the connection cap: answered, then the connection closes
            self.cycle.keep_alive = False
        self.timer = self.loop.call_later(self.body_timeout, self.body_timed_out)

    def admit(self) -> int:
        """Refuse (raise Refused) a request the server will not take on: after shutdown began, on one connection
        too many, or whose declared body would pass the buffered-bytes budget. Nothing of its body is read.
        Returns the bytes reserved for its body."""
        if self.draining:
            raise Refused(SHUTTING_DOWN)
        if not self.admitted:
            self.admitted = self.admission.admit()
            probe = self.url.partition(b"?")[0] in PROBES and self.parser.get_method() in (b"GET", b"HEAD")
            if not self.admitted and not probe:
                raise Refused(self.admission.too_many_connections())
        declared = next((v for k, v in self.headers if k == b"content-length"), b"")
        # a declared size over max_body is refused (413) by the route before it reads; on_body counts what comes
        size = int(declared) if declared.isdigit() and int(declared) <= self.max_body else 0
        if size and not self.admission.reserve(size):
            raise Refused(self.admission.budget_full(size))
        return size

    def on_body(self, body: bytes) -> None:
        counts = self.bodies.get(self.cycle)
        if counts is not None and not self.cycle.response_complete:
            counts[1] += len(body)
            if counts[1] > counts[0]:  # chunked, or more than declared
                more = counts[1] - counts[0]
                if not self.admission.reserve(more):
                    raise Refused(self.admission.budget_full(counts[1]))
                counts[0] += more
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.cancel_timer()
        self.reading_head, self.head_bytes = True, 0

    # refusals
    def refuse_head(self) -> None:
        self.refuse(ApiError(431, "headers_too_large", f"the request line and headers are more than "
                             f"{self.max_head} bytes", f"at most {self.max_head} bytes of headers"))

    def head_timed_out(self) -> None:
        self.timer = None
        if self.head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # connected and never said anything: nobody to answer
            return
        self.refuse(ApiError(408, "header_timeout", f"the request's headers did not arrive within "
                             f"{self.head_timeout:g} s", "a whole request head, sent without pauses"))

    def body_timed_out(self) -> None:
        self.timer = None
        self.refuse(ApiError(408, "body_timeout", f"the request's body did not arrive within "
                             f"{self.body_timeout:g} s of its headers", "the whole body, sent without pauses"))

    def shutdown(self) -> None:
        if not self.reading_head:  # headers in, body still coming: no work has started, so don't wait for it
            return self.refuse(SHUTTING_DOWN)
        if self.cycle is not None and not self.cycle.response_complete:
            return super().shutdown()  # its response goes out with Connection: close
        # idle, or a request head arriving: uvicorn would close it now, under a request already on its way
        self.draining = True
        self.loop.call_later(SHUTDOWN_LINGER_S, self.close_idle)

    def earlier_pending(self) -> bool:
        """A response still owed, on this connection, to a request before the one being refused."""
        running = self.running
        if running is None or running.response_complete:
            return False
        return self.reading_head or running is not self.cycle

    def close_idle(self) -> None:
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    def refuse(self, error: ApiError, path: str | None = None) -> None:
        """Answer `error` unless a response is already under way on this connection, then close it. A request
        whose app task is waiting for its body is told the client went away, so the task ends quietly. Behind
        an earlier request still running (pipelining) the refusal waits for that response: HTTP/1.1 answers in
        order, and a client would take a refusal sent first for the earlier request's answer."""
        self.cancel_timer()
        if path is None:
            url = getattr(self, "url", b"")  # as far as it has arrived: a stalled head may hold part of it
            path = url.partition(b"?")[0].decode("latin-1")
        if self.earlier_pending():
            if not self.reading_head:  # the refused request is queued behind the running one: it never runs
                for entry in [e for e in self.pipeline if e[0] is self.cycle]:
                    self.pipeline.remove(entry)
                self.release_body(self.cycle)
            self.deferred = (error, path)
            self.discarding = 1  # nothing more of this connection is parsed
            return
        cycle = self.cycle
        if cycle is None or (cycle.response_complete if self.reading_head else not cycle.response_started):
            self.transport.write(refusal(error, path))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.release_body()
        if self.admitted:
            self.admitted = False
            self.admission.leave()
        if self.transport.is_closing() or not self.transport.can_write_eof():
            return self.transport.close()
        self.discarding = 1
        self.transport.write_eof()  # after the refusal: the client reads it, then sees the end
        self.flow.resume_reading()
        self.timer = self.loop.call_later(REFUSAL_LINGER_S, self.transport.close)


def protocol_for(settings, on_refused=None) -> type[LimitedProtocol]:
    """on_refused(reason=...): told of each connection-cap and body-budget refusal."""
    return type("LimitedProtocol", (LimitedProtocol,), {
        "admission": Admission(settings.max_connections, settings.max_buffered_bytes, on_refused),
        "max_body": settings.max_body_bytes, "max_head": settings.max_header_bytes,
        "head_timeout": settings.header_timeout_s,
        "body_timeout": settings.body_timeout_s})
