"""The protocol layer: the router (matching, the error shape of any path, the routes a core's extensions allow),
and a toy protocol added in two places (its module, tests/serving/toy_protocol.py, and a registry line) served by
the uvicorn app with its own error shape, refusals before any route included. On Ray: test_ray_serve.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving import protocols
from lstm_onnx.serving.protocols import base
from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocol import refusal
from lstm_onnx.serving.settings import ServeSettings
from tests.serving import toy_protocol

TOL = default_tolerance("float32")
LOCAL = ("binary_tensor_data", "model_configuration", "statistics", "model_repository", "sequence")


def matched(path: str, extensions=LOCAL):
    found = protocols.router(extensions).match(path)
    return None if found is None else (found[0].path, found[1], found[0].hot)


@pytest.mark.parametrize("path, found", [
    ("/v1/predict", ("/v1/predict", {}, True)),
    ("/v1/sessions/abc/step", ("/v1/sessions/{sid}/step", {"sid": "abc"}, True)),
    ("/v1/sessions/abc", ("/v1/sessions/{sid}", {"sid": "abc"}, False)),
    ("/v1/sessions", ("/v1/sessions", {}, False)),
    ("/v2/models/m/infer", ("/v2/models/{name}/infer", {"name": "m"}, True)),
    ("/v2/models/m/versions/1/infer", ("/v2/models/{name}/versions/{version}/infer",
                                       {"name": "m", "version": "1"}, True)),
    ("/v2/models/stats", ("/v2/models/stats", {}, False)),  # not a model named "stats"
    ("/v2/models/m", ("/v2/models/{name}", {"name": "m"}, False)),
    ("/v2/", ("/v2/", {}, False)),
    ("/v1/sessions//step", None), ("/v2/models//infer", None), ("/v2/models/m/versions//infer", None),
    ("/v1/predict/", None), ("/v1/sessions/a/b/step", None), ("/v2/sessions/abc/step", None), ("/nope", None)])
def test_the_router_matches_every_protocols_routes(path, found):
    assert matched(path) == found


def test_routes_a_core_does_not_offer_are_not_mounted():
    assert matched("/v2/models/m/config")[0] == "/v2/models/{name}/config"
    assert matched("/v2/models/m/config", ("binary_tensor_data",)) is None
    assert matched("/v2/models/stats", ("binary_tensor_data",))[0] == "/v2/models/{name}"  # an unknown model there


@pytest.mark.parametrize("path, v2", [("/v1/predict", False), ("/healthz", False), ("", False), ("/v2", True),
                                      ("/v2/", True), ("/v2/models/m/infer", True), ("/v2x", False)])
def test_the_error_shape_is_the_paths_protocols(path, v2):
    body = protocols.error_body(ApiError(400, "bad", "no", "yes"), path)
    assert body == ({"error": "no (expected yes)"} if v2 else {"error": {"code": "bad", "message": "no",
                                                                         "expected": "yes"}})


@pytest.mark.parametrize("status, code", [(408, "header_timeout"), (431, "headers_too_large"),
                                          (503, "too_many_connections"), (503, "body_budget_full")])
def test_refusals_before_any_route_are_in_the_paths_shape(status, code):
    def body(path):
        return json.loads(refusal(ApiError(status, code, "refused"), path).partition(b"\r\n\r\n")[2])

    assert body("/v2/models/m/infer") == {"error": "refused"}
    assert body("/v1/predict") == body("") == {"error": {"code": code, "message": "refused"}}


@pytest.fixture
def with_toy(monkeypatch):
    """The registry line: PROTOCOLS as serving/protocols/__init__.py would list it with the toy protocol."""
    monkeypatch.setattr(protocols, "PROTOCOLS", (*protocols.PROTOCOLS, toy_protocol.PROTOCOL))


def test_a_toy_protocol_is_served_by_the_app_with_its_error_shape(with_toy, serve_model):
    settings = ServeSettings(model=str(serve_model), model_name="m", max_seq_len=16, max_body_bytes=2000)
    p = Predictor.load(serve_model)
    x = np.random.default_rng(0).normal(size=(1, 5, p.num_features)).astype(np.float32)
    with TestClient(create_app(settings)) as app:
        r = app.post("/toy/m/run", json={"x": x[0].tolist()})  # a hot route
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["y"], p.predict(x)[0], atol=TOL.atol, rtol=TOL.rtol)
        assert app.get("/toy/m").json() == {"model": "m", "features": p.num_features}  # a FastAPI route
        refusals = {  # the body checks, the body limit, the router's 405 and 404, in the toy's shape
            ("POST", "/toy/m/run", json.dumps({"x": [[1.0]]})): (422, "bad_input"),
            ("POST", "/toy/m/run", json.dumps({"x": [[1e39] * p.num_features]})): (422, "non_finite"),
            ("POST", "/toy/m/run", "{"): (400, "bad_json"),
            ("POST", "/toy/m/run", "[" * 3000): (413, "body_too_large"),
            ("POST", "/toy/other/run", "{}"): (404, "no_such_model"),
            ("GET", "/toy/m/run", ""): (405, "method_not_allowed"),
            ("GET", "/toy/other", ""): (404, "no_such_model"),
            ("GET", "/toy/m/nothing/here", ""): (404, "http"),
        }
        for (method, path, body), (status, code) in refusals.items():
            r = app.request(method, path, content=body, headers={"content-type": "application/json"})
            assert (r.status_code, r.json()) == (status, {"toy_error": code, "status": status}), (path, body)
        assert app.post("/v1/predict", content=b"{").json()["error"]["code"] == "bad_json"  # v1 unchanged
        assert isinstance(app.post("/v2/models/m/infer", content=b"{").json()["error"], str)  # and v2
        assert "/toy/m/run" not in json.dumps(app.get("/openapi.json").json()["paths"])  # hot: not FastAPI's
    assert json.loads(refusal(ApiError(431, "headers_too_large", "big"), "/toy/m/run").partition(b"\r\n\r\n")[2]) \
        == {"toy_error": "headers_too_large", "status": 431}


def test_the_bearer_check_refuses_in_the_toy_protocols_shape(with_toy, serve_model):
    settings = ServeSettings(model=str(serve_model), model_name="m", auth_token="t0ken")
    with TestClient(create_app(settings)) as app:
        for method, path in (("POST", "/toy/m/run"), ("GET", "/toy/m")):
            r = app.request(method, path, content=b"{}")
            assert (r.status_code, r.json()) == (401, {"toy_error": "unauthorized", "status": 401})
        r = app.get("/toy/m", headers={"authorization": "Bearer t0ken"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ["serving.app:Server", "serving.ray_deployments:RayCore"])
def test_every_backend_takes_the_request_cores_arguments(backend):
    """A handler calls the interface's signature (a stream's client included) whatever backend it runs on."""
    import importlib
    import inspect

    from lstm_onnx.serving.request_core import RequestCore

    if "ray" in backend:
        pytest.importorskip("ray")
    module, name = backend.split(":")
    core = getattr(importlib.import_module(f"lstm_onnx.{module}"), name)
    for method, want in vars(RequestCore).items():
        if callable(want) and not method.startswith("_"):
            every = list(inspect.signature(want).parameters)  # its optional ones too, as handlers pass them
            try:
                inspect.signature(getattr(core, method)).bind(*every)
            except TypeError as exc:
                pytest.fail(f"{name}.{method} does not take RequestCore.{method}'s {every}: {exc}")


def test_a_remembered_match_is_the_same_match_and_its_params_are_the_requests_own():
    router = protocols.router(LOCAL)
    first = router.match("/v2/models/m/versions/1/infer")
    first[1]["name"] = "changed by a handler"
    again = router.match("/v2/models/m/versions/1/infer")
    assert again == (first[0], {"name": "m", "version": "1"}) and first[0].path.endswith("/infer")
    assert router.match("/v2/models/other/infer")[1] == {"name": "other"}
    assert router.match("/v2/models/m/nothing") is None


def test_the_remembered_paths_stay_bounded():
    router = protocols.router(LOCAL)
    for k in range(base.MAX_SEEN + 10):
        assert router.match(f"/v1/sessions/s{k}/step")[1] == {"sid": f"s{k}"}
    assert 0 < len(router.seen) <= base.MAX_SEEN


def test_a_long_path_is_matched_but_not_remembered():
    """A path may be as long as the head limit (64 KiB): 1024 of them remembered held 127 MiB."""
    router = protocols.router(LOCAL)
    sid = "s" * (base.MAX_SEEN_PATH + 1)
    assert router.match(f"/v1/sessions/{sid}/step")[1] == {"sid": sid}
    assert not router.seen
