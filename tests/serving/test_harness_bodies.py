"""The bad-input harness, bodies: hypothesis draws JSON and .npy bodies and content types for both hot routes,
in process. Every answer is 2xx, or 4xx/503 in the JSON error shape; nothing is logged as an error; /healthz
still answers."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given

from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.settings import ServeSettings
from tests.harness import record
from tests.serving import strategies
from tests.serving.harness_tools import LogWatch, problem

pytestmark = pytest.mark.harness


@pytest.fixture(scope="module")
def app(serve_model):
    settings = ServeSettings(model=str(serve_model), max_wait_ms=0.5, max_items=8, max_seq_len=40,
                             max_body_bytes=256 << 10)
    with LogWatch().attached() as log, TestClient(create_app(settings)) as client:
        client.log = log
        yield client
    assert not log.tracebacks(), log.tracebacks()


@pytest.fixture(scope="module")
def sid(app):
    return app.post("/v1/sessions").json()["session_id"]


def check(app, path: str, body: bytes, content_type: str) -> None:
    seen = len(app.log.records)
    headers = {"content-type": content_type.encode("latin-1")} if content_type else {}
    r = app.post(path, content=body, headers=headers)
    why = problem(r.status_code, r.headers.get("content-type", ""), r.content)
    logged = app.log.tracebacks()[seen:] if len(app.log.records) > seen else []
    why = why or (f"logged {logged}" if logged else None)
    record("http", why is None, f"POST {path} [{content_type}] {body[:80]!r}: {why}")
    assert why is None, why


KINDS = ("json", "npy", "mislabelled")


@pytest.mark.parametrize("kind", KINDS)
def test_predict_bodies(app, kind):
    given(strategies.bodies(3, kind))(lambda drawn: check(app, "/v1/predict", *drawn))()


@pytest.mark.parametrize("kind", KINDS)
def test_step_bodies(app, sid, kind):
    given(strategies.bodies(2, kind))(lambda drawn: check(app, f"/v1/sessions/{sid}/step", *drawn))()


DEEP = {  # the case from issue 14: a value nested about 1,000 deep gave a 500 on both hot routes
    "/v1/predict": b'{"inputs": [[[1.0, %s, 3.0]]]}' % strategies.nested(1000).encode(),
    "step": b'{"inputs": [[1.0, %s, 3.0]]}' % strategies.nested(1000).encode(),
}


@pytest.mark.parametrize("route", list(DEEP))
def test_a_value_nested_1000_deep_is_a_422(app, sid, route):
    path = route if route.startswith("/") else f"/v1/sessions/{sid}/step"
    r = app.post(path, content=DEEP[route])
    record("http", r.status_code == 422, f"deep value on {route}: {r.status_code}")
    assert r.status_code == 422, r.text
    assert "feature 1 is [[[[" in r.json()["error"]["message"]


def test_still_healthy_afterwards(app):
    assert app.get("/healthz").json() == {"status": "ok"}
