"""The bad-input harness, by the OpenAPI document: schemathesis generates requests for every route it
describes (the hot routes included), valid and invalid, and checks each answer against the document and the
invariant (2xx, or 4xx/503 in the JSON error shape; no traceback logged)."""
from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.protocols.v1 import PREDICT, STEP
from lstm_onnx.serving.settings import ServeSettings
from tests.harness import record
from tests.serving.harness_tools import LogWatch, problem

pytestmark = pytest.mark.harness
TOKEN = "harness-token-0123456789"
SETTINGS = dict(max_wait_ms=0.5, max_items=8, max_seq_len=16)


@pytest.fixture(scope="module")
def log():
    with LogWatch().attached() as watch:
        yield watch
    assert not watch.tracebacks(), watch.tracebacks()


@pytest.fixture(scope="module")
def served(serve_model, log):
    app = create_app(ServeSettings(model=str(serve_model), **SETTINGS))
    yield app
    shutdown_lifespans()


@pytest.fixture(scope="module")
def served_with_token(serve_model, log):
    app = create_app(ServeSettings(model=str(serve_model), auth_token=TOKEN, **SETTINGS))
    yield app
    shutdown_lifespans()


@pytest.fixture(scope="module")
def api(served):
    return schemathesis.openapi.from_asgi("/openapi.json", served)


@pytest.fixture(scope="module")
def api_with_token(served_with_token):
    return schemathesis.openapi.from_asgi("/openapi.json", served_with_token,
                                          headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_document_describes_every_route(api, served):
    ops = {(op.path, op.method.upper()) for op in (r.ok() for r in api.get_all_operations())}
    assert ops == set(ROUTES)
    body = served.openapi()["paths"][PREDICT]["post"]["requestBody"]["content"]
    step = body["application/json"]["schema"]["properties"]["inputs"]["items"]["items"]
    assert (step["minItems"], step["maxItems"]) == (3, 3) and "application/x-npy" in body


_sessions = itertools.count()


def live_session(case, app) -> None:
    """Every other step case goes to a real session, so that valid bodies reach the model."""
    if case.path == STEP and next(_sessions) % 2 == 0:
        sessions = app.state.server.sessions
        live = next(iter(sessions.sessions), None)  # one kept open: a new one per case would hit max_sessions
        case.path_parameters["sid"] = live if live is not None else sessions.create().id


def run(case, log, headers=None, negative=False):
    """Our invariant instead of schemathesis's not_a_server_error (a 503 is fine) and negative_data_rejection
    (whose list lacks 413): a request the document forbids must not get a 2xx."""
    seen = len(log.records)
    response = case.call(headers=headers)
    content_type = (response.headers.get("content-type") or [""])[0]
    why = problem(response.status_code, content_type, response.content)
    if negative and response.status_code < 300:
        why = why or f"a request the document forbids got {response.status_code}"
    why = why or (f"logged {log.tracebacks()}" if len(log.records) > seen and log.tracebacks() else None)
    try:
        case.validate_response(response, excluded_checks=[not_a_server_error, negative_data_rejection],
                               headers=headers)
    except Exception as exc:  # noqa: BLE001 - schemathesis's failures: AssertionError or its FailureGroup
        why = why or f"not as documented: {str(exc)[:300]}"
    record("http", why is None, f"{case.method} {case.formatted_path} {str(case.body)[:80]}: {why}")
    assert why is None, why


# schemathesis.pytest.from_fixture needs pytest internals that pytest 9 dropped (Function._nodeid), so each
# operation's strategy is driven by hypothesis directly.
ROUTES = [(PREDICT, "POST"), (STEP, "POST"), ("/v1/sessions", "POST"), ("/v1/sessions/{sid}", "DELETE"),
          ("/v1/model", "GET"), ("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET")]
# Negative cases (requests the document forbids) need something to break: the hot routes' bodies.
CASES = [(p, m, GenerationMode.POSITIVE) for p, m in ROUTES] + [
    (p, "POST", GenerationMode.NEGATIVE) for p in (PREDICT, STEP)]


@pytest.mark.parametrize("path, method, mode", CASES, ids=lambda v: getattr(v, "value", v))
def test_every_route_by_the_document(api, served, log, path, method, mode):
    def one(case):
        live_session(case, served)
        run(case, log, negative=mode is GenerationMode.NEGATIVE)

    given(case=api[path][method].as_strategy(generation_mode=mode))(one)()


@pytest.mark.parametrize("path, method", ROUTES)
def test_every_route_with_a_token(api_with_token, served_with_token, log, path, method):
    def one(case):
        live_session(case, served_with_token)
        run(case, log, headers={"Authorization": f"Bearer {TOKEN}"})

    strategy = api_with_token[path][method].as_strategy(generation_mode=GenerationMode.POSITIVE)
    given(case=strategy)(one)()
