"""The bad-input harness on the wire: a real uvicorn server (serving/protocol.py's limits) and raw bytes over a
socket. Huge and malformed heads, clients that stall in the head or the body, and hypothesis-drawn requests
all get a 4xx in the JSON error shape, the server logs no traceback and still answers /healthz."""
from __future__ import annotations

import select
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lstm_onnx.serving.settings import ServeSettings
from tests.harness import record
from tests.serving import strategies
from tests.serving.harness_tools import Live, read_reply, request

pytestmark = pytest.mark.harness
HEAD_LIMIT, TIMEOUT = 16 << 10, 0.4


@pytest.fixture(scope="module")
def live(serve_model):
    settings = ServeSettings(model=str(serve_model), max_wait_ms=0.5, max_items=8, max_seq_len=40,
                             max_body_bytes=64 << 10, max_header_bytes=HEAD_LIMIT, header_timeout_s=TIMEOUT,
                             body_timeout_s=TIMEOUT)
    with Live(settings) as server:
        yield server
        assert server.healthz() == 200
    assert not server.log.tracebacks(), server.log.tracebacks()


def expect(reply, status: int, code: str, what: str) -> None:
    got = reply.json()["error"]["code"] if reply.status == status and not reply.problem() else None
    record("http", got == code, f"{what}: {reply.status} {reply.body[:120]!r}")
    assert reply.problem() is None and reply.status == status and got == code, (what, reply.status, reply.body)


def test_a_huge_header_is_refused_before_it_is_read(live):
    """Issue 14: four 128 MiB headers took the server from 218 to 780 MiB and each got a 200. The server must
    answer 431 having read at most the limit plus one socket read."""
    with live.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent, chunk = 0, b"a" * 8192
        while sent < 8 << 20 and not select.select([s], [], [], 0.02)[0]:
            try:
                s.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        if sent >= 8 << 20:
            s.sendall(b"\r\n\r\n")
        reply = read_reply(s)
    expect(reply, 431, "headers_too_large", "8 MiB header")
    assert sent <= HEAD_LIMIT + (512 << 10), f"the server read {sent} bytes of header before refusing"


def test_many_small_headers_over_the_limit_are_431(live):
    headers = {f"X-H{i}": "v" * 100 for i in range(HEAD_LIMIT // 100)}
    expect(live.exchange(request("GET", "/healthz", headers=headers)), 431, "headers_too_large", "many headers")


def test_a_long_url_is_431(live):
    expect(live.exchange(request("GET", "/v1/model?" + "q" * (HEAD_LIMIT + 10))), 431, "headers_too_large",
           "long URL")


def stalled(live, raw: bytes):
    """Send `raw`, keep the connection open without sending more, time the answer."""
    with live.connect(timeout=5 + 10 * TIMEOUT) as s:
        s.sendall(raw)
        return read_reply(s)


def test_a_stalled_head_is_408_within_the_header_timeout(live):
    reply = stalled(live, b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Le")
    expect(reply, 408, "header_timeout", "stalled head")
    assert reply.elapsed < TIMEOUT + 1.0, reply.elapsed


@pytest.mark.parametrize("route", ["/v1/predict", "step"])
def test_a_stalled_body_is_408_within_the_body_timeout(live, route):
    """Issue 14: nothing timed out a client that stalled mid-body."""
    path = route
    if route == "step":  # a live session, or the route refuses (404) before it reads the body
        path = f"/v1/sessions/{live.exchange(request('POST', '/v1/sessions')).json()['session_id']}/step"
    raw = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"inputs": [[[1.0,'
    reply = stalled(live, raw)
    expect(reply, 408, "body_timeout", f"stalled body on {path}")
    assert reply.elapsed < TIMEOUT + 1.0, reply.elapsed


@pytest.mark.parametrize("raw, status", [
    (b"POST /v2/models/serve/infer HTTP/1.1\r\nHost: t\r\nContent-Le", 408),
    (b"POST /v2/models/serve/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n{", 408),
    (b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (HEAD_LIMIT + 10) + b"\r\n\r\n", 431)])
def test_a_v2_client_gets_refusals_in_the_v2_shape(live, raw, status):
    """408 and 431 are written before any route runs; on a v2 path they were in v1's {"error": {...}} shape."""
    reply = stalled(live, raw)
    json_reply = reply.status == status and reply.headers.get("content-type", "").startswith("application/json")
    body = reply.json() if json_reply else {}
    clean = isinstance(body.get("error"), str) and bool(body["error"])
    record("http", clean, f"v2-shaped {status}: {reply.status} {reply.body[:120]!r}")
    assert clean, (reply.status, reply.body)


def test_a_stalled_chunked_body_is_408(live):
    raw = (b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\n{\"inp\r\n")
    expect(stalled(live, raw), 408, "body_timeout", "stalled chunked body")


def test_a_silent_connection_is_closed(live):
    with live.connect(timeout=5) as s:
        start = time.monotonic()
        data = s.recv(100)
    record("http", data == b"", f"silent connection got {data!r}")
    assert data == b"" and time.monotonic() - start < TIMEOUT + 1.0


def test_a_good_request_after_all_that(live):
    reply = live.exchange(request("POST", "/v1/predict", b'{"inputs": [[[1.0, 2.0, 3.0]]]}'))
    assert reply.status == 200 and len(reply.json()["outputs"]) == 1


# hypothesis: raw requests with odd methods, paths, versions, headers and bodies
TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
ODD_BYTES = st.binary(max_size=24)
PATHS = st.sampled_from(["/v1/predict", "/v1/sessions/x/step", "/v1/sessions", "/v1/model", "/healthz",
                         "/readyz", "/metrics", "/openapi.json", "/", "*", "/v1/predict?x=1", "/%ff%00",
                         "/v1/sessions/%2e%2e/step", "http://h/v1/predict", "/v1/sessions/\xe9/step"])
HEADERS = st.one_of(
    st.tuples(st.just("Content-Type"), strategies.CONTENT_TYPES),
    st.tuples(st.just("Content-Length"), st.sampled_from(["-1", "abc", "1e3", "99999999999999999999", " 5",
                                                         "0x10", "5, 5"])),
    st.tuples(st.just("Transfer-Encoding"), st.sampled_from(["chunked", "gzip", "chunked, gzip", "identity", "x"])),
    st.tuples(st.sampled_from(["Expect", "Connection", "Upgrade", "Authorization", "Host"]),
              st.sampled_from(["100-continue", "upgrade", "websocket", "h2c", "close", "Bearer x", ""])),
    st.tuples(TOKEN, TOKEN),
    st.tuples(TOKEN, st.text(max_size=40)),
    st.tuples(TOKEN, st.integers(1, 3 * HEAD_LIMIT).map(lambda n: "v" * n)))


@st.composite
def raw_requests(draw) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW"]) | TOKEN)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "HTTP/1.1 x"]))
    body, _ = draw(strategies.bodies(draw(st.sampled_from([2, 3])), "mislabelled"))
    lines = [f"{method} {draw(PATHS)} {version}".encode("utf-8"), b"Host: t", b"Connection: close"]
    if draw(st.booleans()):
        lines.append(b"Content-Length: %d" % len(body))
    lines += [f"{k}: {v}".encode("utf-8") for k, v in draw(st.lists(HEADERS, max_size=4))]
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(ODD_BYTES))  # a header line that may hold CR, LF, NUL or no colon
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    return raw[:draw(st.integers(0, len(raw)))] if draw(st.integers(0, 6)) == 0 else raw


@given(raw=raw_requests())
def test_raw_requests(live, raw):
    reply = live.exchange(raw, timeout=5 + 10 * TIMEOUT, shut_write=False)
    why = reply.problem()
    if why == "no response" and not raw.strip():
        why = None  # nothing sent, nothing to answer
    if raw.startswith(b"HEAD ") and reply.status is not None and not reply.body:  # HEAD: headers, no body
        why = None if reply.status < 300 or reply.headers.get("content-type") == "application/json" else why
    record("http", why is None, f"{raw[:100]!r}: {why}")
    assert why is None, (raw[:200], why)
