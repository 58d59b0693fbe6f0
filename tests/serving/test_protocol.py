"""The seam between serving/protocol.py and uvicorn: LimitedProtocol subclasses uvicorn's private
HttpToolsProtocol, so pyproject pins uvicorn to the minor version tested here, and this test fails, naming the
name, when an upgrade moves what it overrides or reads."""
from __future__ import annotations

import asyncio
import json
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httptools")
try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement  # noqa: E402
from uvicorn.protocols.http import httptools_impl  # noqa: E402

from lstm_onnx.serving import protocol as limited_protocol  # noqa: E402
from lstm_onnx.serving.protocol import protocol_for  # noqa: E402
from lstm_onnx.serving.wire import coalescing  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OVERRIDDEN = ("connection_made", "connection_lost", "data_received", "on_headers_complete", "on_body",
              "on_message_complete", "on_response_complete", "shutdown", "_start_asgi_task")
CALLED = ("_unset_keepalive_if_required", "_should_upgrade", "handle_websocket_upgrade",
          "_unsupported_upgrade_warning")
READ = ("parser", "loop", "logger", "transport", "flow", "url", "headers", "cycle", "pipeline")  # instance attrs
CYCLE = ("response_started", "response_complete", "disconnected", "message_event", "keep_alive")


def changed(what: str) -> str:
    return (f"uvicorn {uvicorn.__version__} changed {what}, which serving/protocol.py relies on: adapt "
            "LimitedProtocol to it, then move the pin in pyproject.toml's serve extra")


def test_the_installed_uvicorn_is_the_pinned_one():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [Requirement(r) for r in extras["serve"] if Requirement(r).name == "uvicorn"]
    assert pin.specifier and metadata.version("uvicorn") in pin.specifier, (
        f"uvicorn {metadata.version('uvicorn')} is installed, pyproject pins {pin}: run this test file on the "
        "version you pin")


def test_the_private_names_we_override_and_call_are_there():
    base = httptools_impl.HttpToolsProtocol
    for name in OVERRIDDEN + CALLED:
        assert callable(getattr(base, name, None)), changed(f"HttpToolsProtocol.{name}")
    for status in (400, 408, 431, 503):
        assert httptools_impl.STATUS_LINE[status].startswith(b"HTTP/1.1 %d " % status), changed("STATUS_LINE")


class Transport:
    def __init__(self):
        self.written, self.closed, self.eof = [], False, False

    def get_extra_info(self, name, default=None):
        return default

    def write(self, data):
        assert not self.eof, "a write after write_eof(), which asyncio's transports refuse"
        self.written.append(data)

    def close(self):
        self.closed = True

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.eof = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


@pytest.mark.parametrize("wrap", [lambda cls: cls, coalescing], ids=["limited", "limited+coalescing"])
def test_a_request_still_sending_its_body_is_refused_at_shutdown_through_the_seam(monkeypatch, wrap):
    """Drives LimitedProtocol as uvicorn would, alone and as the server composes it (serving/wire.py around it):
    the attributes it reads exist, its refusal is written before the end of the stream, and the connection closes
    after the refusal's linger."""
    monkeypatch.setattr(limited_protocol, "REFUSAL_LINGER_S", 0.02)
    async def app(scope, receive, send):
        await receive()  # waits for a body that never comes

    async def scenario():
        settings = SimpleNamespace(max_header_bytes=4096, header_timeout_s=5.0, body_timeout_s=5.0,
                                   max_body_bytes=1024, max_connections=4, max_buffered_bytes=4096)
        limited = wrap(protocol_for(settings))
        config = uvicorn.Config(app, http=limited, ws="none", lifespan="off", proxy_headers=False)
        protocol = limited(config=config, server_state=uvicorn.server.ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        for name in READ:
            assert hasattr(protocol, name), changed(f"HttpToolsProtocol's attribute {name!r}")
        assert protocol.url == b"/v2/models/m/infer", changed("HttpToolsProtocol.url")
        for name in CYCLE:
            assert hasattr(protocol.cycle, name), changed(f"RequestResponseCycle's attribute {name!r}")
        protocol.shutdown()
        await asyncio.sleep(0.01)  # the app's task sees the disconnect and ends
        assert transport.eof and not transport.closed  # lingering: what the client still sends is read and dropped
        protocol.data_received(b"abcde")
        await asyncio.sleep(0.05)
        protocol.connection_lost(None)
        assert (limited.admission.connections, limited.admission.buffered) == (0, 0)  # the counts come back
        return transport

    transport = asyncio.run(scenario())
    reply = b"".join(transport.written)
    assert reply.startswith(b"HTTP/1.1 503 ") and transport.closed and transport.eof, reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"error": "the server is shutting down (expected retry "
                                                                     "on a running server)"}  # v2's shape


def pipelined_scenario(wrap, requests: bytes, settings_over: dict, app_delay: float = 0.05):
    """Requests sent at once on one connection (HTTP/1.1 pipelining) to an app that answers each after
    `app_delay`; returns (what was written, the Admission's counts after the connection closed)."""
    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(app_delay)
        reply = b"ok %d" % len(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(reply))]})
        await send({"type": "http.response.body", "body": reply})

    async def scenario():
        settings = SimpleNamespace(**{**dict(max_header_bytes=4096, header_timeout_s=5.0, body_timeout_s=5.0,
                                             max_body_bytes=1024, max_connections=4, max_buffered_bytes=4096),
                                      **settings_over})
        limited = wrap(protocol_for(settings))
        config = uvicorn.Config(app, http=limited, ws="none", lifespan="off", proxy_headers=False)
        protocol = limited(config=config, server_state=uvicorn.server.ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(requests)
        for _ in range(40):
            await asyncio.sleep(0.02)
            protocol.data_received(b"")  # uvicorn resumes reading: anything buffered would be fed again
        counts_before_close = (limited.admission.connections, limited.admission.buffered)
        protocol.connection_lost(None)
        return b"".join(transport.written), counts_before_close, (limited.admission.connections,
                                                                  limited.admission.buffered)

    return asyncio.run(scenario())


def post(body: bytes) -> bytes:
    return b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("wrap", [lambda cls: cls, coalescing], ids=["limited", "limited+coalescing"])
def test_pipelined_requests_release_their_own_budget(wrap):
    """Each pipelined request reserves and releases its own body bytes: 20 pairs sent at once leave the budget
    empty (a shared counter leaked one body per pair, until every request got 503 body_budget_full)."""
    written, open_counts, closed_counts = pipelined_scenario(wrap, post(b"a" * 82) * 2, {}, app_delay=0.01)
    assert written.count(b"HTTP/1.1 200 ") == 2 and b"503" not in written, written
    assert open_counts == (1, 0) and closed_counts == (0, 0)


@pytest.mark.parametrize("wrap", [lambda cls: cls, coalescing], ids=["limited", "limited+coalescing"])
def test_a_refused_pipelined_request_is_answered_after_the_earlier_one(monkeypatch, wrap):
    """The second request's body would pass the budget while the first runs: the first still gets its 200, and
    the 503 comes after it (sent first, a client would take it for the first request's answer)."""
    monkeypatch.setattr(limited_protocol, "REFUSAL_LINGER_S", 0.02)
    written, _, closed_counts = pipelined_scenario(wrap, post(b"a" * 600) + post(b"b" * 600),
                                                   {"max_buffered_bytes": 1024})
    first, second = written.find(b"HTTP/1.1 200 "), written.find(b"HTTP/1.1 503 ")
    assert 0 <= first < second and b"ok 600" in written[:second], written
    assert closed_counts == (0, 0)
