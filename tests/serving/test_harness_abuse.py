"""The abuse harness on the wire: one client hoarding sessions, more connections than the server takes, bodies
past the buffered-bytes budget, requests left in the queue past their deadline. Each gets a 429 or 503 in the
protocol's error shape with Retry-After, before the server spends memory or work on it, and its resources come
back when it ends."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lstm_onnx.serving.settings import ServeSettings
from tests.harness import record
from tests.serving.harness_tools import Live, Reply, read_reply, request

pytestmark = pytest.mark.harness
PER_CLIENT, CONNECTIONS, BODY, BUDGET = 3, 6, 4 << 20, 8 << 20
WHOLE = request("POST", "/v1/predict", b'{"inputs": [[' + b", ".join([b"[1.25, 2.5, 3.75]"] * 200_000) + b"]]}")


@pytest.fixture(scope="module")
def live(serve_model):
    settings = ServeSettings(model=str(serve_model), max_wait_ms=0.5, max_seq_len=4000, max_body_bytes=BODY,
                             max_sessions=50, max_sessions_per_client=PER_CLIENT, max_connections=CONNECTIONS,
                             max_buffered_bytes=BUDGET, header_timeout_s=5, body_timeout_s=5)
    with Live(settings) as server:
        yield server
        assert server.healthz() == 200
    assert not server.log.tracebacks(), server.log.tracebacks()


def refused(reply, status: int, code: str, what: str, v2: bool = False) -> None:
    """`reply` is `status` in the protocol's error shape, with Retry-After, and closes or keeps as HTTP says."""
    why = reply.problem() if not v2 else None
    body = reply.json() if reply.status is not None and reply.body.startswith(b"{") else {}
    error = body.get("error")
    got = error if v2 else (error or {}).get("code")
    clean = (reply.status == status and why is None and "retry-after" in reply.headers
             and (isinstance(got, str) and bool(got) if v2 else got == code))
    record("abuse", clean, f"{what}: {reply.status} {reply.headers.get('retry-after')} {reply.body[:160]!r}")
    assert clean, (what, reply.status, reply.headers, reply.body)


def v2_sequence(sid, start: bool = False, end: bool = False) -> bytes:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 3], "data": [1.0, 2.0, 3.0]}],
            "parameters": {"sequence_id": sid, "sequence_start": start, "sequence_end": end}}
    return request("POST", "/v2/models/serve/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})


def test_one_client_cannot_hold_more_than_its_session_quota(live):
    """Issue 21: 250 sequences with 3.9 MB ids from one client added 815 MiB; nothing stopped one client from
    taking every session the server has. v1 sessions and v2 sequences count against one quota per address."""
    opened = [live.exchange(request("POST", "/v1/sessions")) for _ in range(PER_CLIENT - 1)]
    assert all(r.status == 201 for r in opened), [r.body for r in opened]
    assert live.exchange(v2_sequence("s-1", start=True)).status == 200  # the quota's last slot
    refused(live.exchange(request("POST", "/v1/sessions")), 429, "too_many_sessions_for_client", "v1 over quota")
    refused(live.exchange(v2_sequence("s-2", start=True)), 429, "", "v2 sequence over quota", v2=True)
    assert live.exchange(v2_sequence("s-1", start=True)).status == 200  # a restart replaces, it does not add
    assert live.exchange(v2_sequence("s-1", end=True)).status == 200  # ending it frees its slot
    again = live.exchange(request("POST", "/v1/sessions"))
    record("abuse", again.status == 201, f"a session after one ended: {again.status}")
    assert again.status == 201, again.body
    for r in [*opened, again]:
        assert live.exchange(request("DELETE", f"/v1/sessions/{r.json()['session_id']}")).status == 200
    assert live.exchange(request("POST", "/v1/sessions")).status == 201  # all freed by DELETE


def whole_bodies(live, clients: int = 12) -> list:
    """Replies to `clients` at once each sending a 3.8 MB body in one go. A server that closes right after its
    refusal resets connections still sending, and a client whose send fails (as most HTTP clients do) reads no
    answer."""
    def send(_):
        with live.connect(timeout=10) as s:
            try:
                s.sendall(WHOLE)
            except OSError as exc:
                return Reply(None, {}, repr(exc).encode(), 0.0)
            return read_reply(s)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(send, range(clients)))


def wait_for(check, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_request_on_one_connection_too_many_is_503_before_its_body(live):
    """Issue 21: 150 connections each holding a 4 MiB body added 607 MiB; nothing capped connections."""
    held = [live.connect() for _ in range(CONNECTIONS)]
    try:
        for s in held:  # a request on each, kept alive
            s.sendall(b"GET /v1/model HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_reply(s).status == 200
        with live.connect() as extra:  # the head only: the refusal must not wait for the body
            extra.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 90000\r\n\r\n")
            reply = read_reply(extra)
        refused(reply, 503, "too_many_connections", "one connection too many")
        for reply in whole_bodies(live):  # the refusal must reach clients that send their body at once
            refused(reply, 503, "too_many_connections", "one connection too many, body sent")
        assert reply.headers.get("connection") == "close"
        probe = live.exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # liveness is not load
        record("abuse", probe.status == 200, f"/healthz at the connection cap: {probe.status}")
        assert probe.status == 200 and probe.headers.get("connection") == "close", probe.headers
    finally:
        for s in held:
            s.close()
    ok = wait_for(lambda: live.exchange(request("POST", "/v1/predict", b'{"inputs": [[[1, 2, 3]]]}')).status == 200)
    record("abuse", ok, "a request once the held connections closed")
    assert ok
    assert 'lstm_rejected_total{reason="connection_limit"}' in live.exchange(request("GET", "/metrics")).body.decode()


def body_of(steps: int) -> bytes:
    return b'{"inputs": [[' + b", ".join([b"[1.25, 2.5, 3.75]"] * steps) + b"]]}"


def test_bodies_past_the_buffered_bytes_budget_are_503_and_their_bytes_come_back(live):
    """Issue 21: no budget for buffered bodies. Two stalled bodies of BODY bytes fill BUDGET; a third is refused
    from its Content-Length alone, and the bytes come back when the stalled requests end, however they end."""
    stalled = [live.connect(timeout=10) for _ in range(2)]
    try:
        for s in stalled:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n{\"inputs\": " % BODY)
        time.sleep(0.2)
        with live.connect() as third:
            third.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n")
            reply = read_reply(third)
        refused(reply, 503, "body_budget_full", "a body past the budget")
        for reply in whole_bodies(live):
            refused(reply, 503, "body_budget_full", "a body past the budget, sent whole")
        chunked = (b"POST /v2/models/serve/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"ea60\r\n" + b" " * 60000 + b"\r\n")  # no length declared: refused as its bytes arrive
        refused(live.exchange(chunked), 503, "", "a chunked body past the budget", v2=True)
    finally:
        stalled[0].close()  # the client goes away
    assert read_reply(stalled[1]).status == 408  # the other times out (body_timeout_s)
    stalled[1].close()
    body = body_of(60000 // 20)
    ok = wait_for(lambda: live.exchange(request("POST", "/v1/predict", body)).status == 200)
    record("abuse", ok, "a big body once the stalled ones ended")
    assert ok
    assert 'lstm_rejected_total{reason="body_budget"}' in live.exchange(request("GET", "/metrics")).body.decode()


def test_a_sequence_past_its_queue_deadline_is_503_unrun(serve_model):
    """Issue 21: no queue deadline. One request holds the one inference worker for 0.8 s; requests queued behind
    it wait past queue_timeout_s (0.3 s): they are answered 503 with the reason and never run."""
    settings = ServeSettings(model=str(serve_model), max_batch=1, workers=1, queue_timeout_s=0.3)
    with Live(settings) as live:
        predictor = live.server.config.app.state.server.batcher.predictor
        run_ragged, held = predictor.run_ragged, threading.Event()

        def slow_first_run(*args, **kwargs):  # the first run holds the worker, as a long batch would
            if not held.is_set():
                held.set()
                time.sleep(0.8)
            return run_ragged(*args, **kwargs)

        predictor.run_ragged = slow_first_run
        body = json.loads(v2_sequence(0).split(b"\r\n\r\n", 1)[1])
        del body["parameters"]
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(live.exchange, request("POST", "/v1/predict", b'{"inputs": [[[1, 2, 3]]]}'))
            assert held.wait(5)
            v1 = pool.submit(live.exchange, request("POST", "/v1/predict", b'{"inputs": [[[1, 2, 3]]]}'))
            v2 = pool.submit(live.exchange, request("POST", "/v2/models/serve/infer", json.dumps(body).encode()))
            first, v1, v2 = first.result(), v1.result(), v2.result()
        assert first.status == 200, first.body
        refused(v1, 503, "queue_timeout", "v1 past the queue deadline")
        assert "timeout expired" in v1.json()["error"]["message"]
        refused(v2, 503, "", "v2 past the queue deadline", v2=True)
        runs = live.exchange(request("GET", "/v2/models/stats")).json()["model_stats"][0]["execution_count"]
        record("abuse", runs == 1, f"runs with two requests past their deadline: {runs}")
        assert runs == 1
    assert not live.log.tracebacks(), live.log.tracebacks()
