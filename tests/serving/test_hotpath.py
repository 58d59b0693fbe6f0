"""The hot routes' ASGI handling on its own: routing, chunked bodies, disconnects, failures after the start."""
from __future__ import annotations

import asyncio
import json

import pytest

from lstm_onnx.serving import protocols
from lstm_onnx.serving.hotpath import HotRoutes
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.metrics import Metrics
from lstm_onnx.serving.protocols.base import Protocol, Route, Router
from lstm_onnx.serving.protocols.v1 import PREDICT, STEP


def route_of(path):
    found = HotRoutes(protocols.router(), None, None, 0).match(path)
    return None if found is None else (found[0].path, found[1])


def hot_routes(handler, metrics, limit):
    """HotRoutes over one hot route at PREDICT whose handler takes (body, params, media)."""
    route = Route(("POST",), PREDICT, lambda core, call: handler(call.body, call.params, call.media), hot=True)
    return HotRoutes(Router([Protocol("v1", "", ApiError.body, (route,))]), None, metrics, limit)


def run_hot(hot, scope, receive, send):
    return hot(scope, receive, send, *hot.match(scope["path"]))


@pytest.mark.parametrize("path, found", [
    ("/v1/predict", (PREDICT, {})), ("/v1/sessions/abc/step", (STEP, {"sid": "abc"})),
    ("/v1/predict/", None), ("/v1/sessions//step", None), ("/v1/sessions/a/b/step", None), ("/healthz", None),
    ("/v2/sessions/abc/step", None)])
def test_route_of(path, found):
    assert route_of(path) == found


def call(chunks, send=None, method="POST", limit=1000):
    """Runs one request through HotRoutes with an echo handler; returns (sent messages, metrics text)."""
    metrics, sent = Metrics(lambda: 0, lambda: 0), []

    async def echo(body, params, media):
        return {"echo": json.loads(await body()), "media": media}

    async def receive():
        return chunks.pop(0)

    async def record(message):
        sent.append(message)

    hot = hot_routes(echo, metrics, limit)
    scope = {"type": "http", "method": method, "path": PREDICT, "headers": []}
    asyncio.run(run_hot(hot, scope, receive, send or record))
    return sent, metrics.render()


def chunked(raw: bytes, n: int) -> list[dict]:
    parts = [raw[i:i + n] for i in range(0, len(raw), n)]
    return [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]


def test_a_body_in_many_chunks_is_read_whole():
    raw = json.dumps({"inputs": [[[1.0, 2.0, 3.0]] * 5]}).encode()
    sent, _ = call(chunked(raw, 7))
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {"echo": json.loads(raw), "media": ""}


def test_a_chunked_body_over_the_limit_is_413():
    sent, _ = call(chunked(b'{"inputs": [' + b"1.0," * 400 + b"1.0]}", 100))
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"


def test_a_client_gone_before_its_body_gets_no_answer_and_is_counted():
    sent, text = call([{"type": "http.request", "body": b'{"inp', "more_body": True}, {"type": "http.disconnect"}])
    assert sent == [] and 'status="499"' in text


def test_other_methods_are_405_with_allow():
    sent, _ = call([], method="PUT")
    assert sent[0]["status"] == 405 and (b"allow", b"POST") in sent[0]["headers"]


def test_a_failed_send_is_left_to_the_server_and_counted_as_500():
    sent = []

    async def breaks_on_body(message):
        sent.append(message)
        if message["type"] == "http.response.body":
            raise OSError("connection reset")

    metrics = Metrics(lambda: 0, lambda: 0)
    hot = hot_routes(lambda body, params, media: asyncio.sleep(0, {"ok": 1}), metrics, 100)
    scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": []}
    with pytest.raises(OSError):  # left to the ASGI server, which closes the connection
        asyncio.run(run_hot(hot, scope, None, breaks_on_body))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    text = metrics.render()
    assert 'status="500"' in text and 'status="200"' not in text


def test_handler_errors_become_json():
    async def refuses(body, params, media):
        raise ApiError(409, "nope", "refused", "something else")

    metrics, sent = Metrics(lambda: 0, lambda: 0), []

    async def record(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": []}
    asyncio.run(run_hot(hot_routes(refuses, metrics, 100), scope, None, record))
    assert sent[0]["status"] == 409
    assert json.loads(sent[1]["body"]) == {"error": {"code": "nope", "message": "refused", "expected": "something else"}}


def test_a_request_cancelled_at_the_end_of_the_grace_gets_a_503_not_a_traceback():
    """uvicorn cancels the requests still running when graceful_timeout_s is over; they answer 503 and end."""
    metrics, sent = Metrics(lambda: 0, lambda: 0), []

    async def hangs(body, params, media):
        await asyncio.sleep(3600)

    async def record(message):
        sent.append(message)

    async def main():
        scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": []}
        task = asyncio.create_task(run_hot(hot_routes(hangs, metrics, 100), scope, None, record))
        await asyncio.sleep(0.01)
        task.cancel()
        await task  # ends without raising

    asyncio.run(main())
    assert sent[0]["status"] == 503 and json.loads(sent[1]["body"])["error"]["code"] == "shutting_down"
    assert 'status="503"' in metrics.render()
