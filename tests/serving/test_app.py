"""The HTTP app in-process: predictions against PyTorch, batching equivalence, sessions, every bad input."""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lstm_onnx.core.machine import fingerprint
from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.settings import ServeSettings
from tests import models

TOL = default_tolerance("float32")


def client(model, **overrides) -> TestClient:
    settings = ServeSettings(model=str(model), **overrides)
    return TestClient(create_app(settings))


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=TOL.atol, rtol=TOL.rtol)


@pytest.fixture(scope="module")
def app(serve_model):
    with client(serve_model, max_wait_ms=30.0, max_items=8, max_seq_len=40, max_body_bytes=20_000,
                max_sessions=3) as c:
        yield c


def test_predict_matches_pytorch_per_sequence(app, ckpt):
    xs = models.raw_inputs(np.random.default_rng(1), [7, 3, 12])
    r = app.post("/v1/predict", json={"inputs": [x.tolist() for x in xs]})
    assert r.status_code == 200, r.text
    for x, y in zip(xs, r.json()["outputs"]):
        close(y, models.torch_reference(ckpt, x[None])[0])


@pytest.mark.parametrize("model_fixture", ["serve_model", "stateful_model"])
def test_concurrent_requests_are_batched_and_equal_unbatched(request, model_fixture):
    """Padded (lengths input) and grouped-by-length batching must both equal one-at-a-time runs."""
    model = request.getfixturevalue(model_fixture)
    alone = Predictor.load(model)
    rng = np.random.default_rng(2)
    lengths = [int(n) for n in rng.integers(1, 15, 24)]
    xs = models.raw_inputs(rng, lengths)
    with client(model, max_batch=16, max_wait_ms=200.0) as c:
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda x: c.post("/v1/predict", json={"inputs": [x.tolist()]}), xs))
        metrics = c.get("/metrics").text
    for x, r in zip(xs, replies):
        assert r.status_code == 200, r.text
        close(r.json()["outputs"][0], alone.predict(x[None])[0])
    count = float(metrics.split("lstm_batch_size_count ")[1].split()[0])
    assert count < len(xs), f"no request was coalesced: {count} runs for {len(xs)} requests"


def test_padding_without_lengths_would_be_wrong(serve_model):
    """The mutation the equivalence test guards against: padding a short item and running it full length."""
    p = Predictor.load(serve_model)
    x = models.raw_inputs(np.random.default_rng(3), [4])[0]
    padded = np.concatenate([x, np.zeros((6, models.F), np.float32)])[None]
    assert not np.allclose(p.predict(padded), p.predict(x[None]), atol=1e-3)
    close(p.predict(padded, lengths=[4]), p.predict(x[None]))


def test_session_steps_equal_a_whole_pass(app, ckpt):
    x = models.raw_inputs(np.random.default_rng(4), [9])[0]
    sid = app.post("/v1/sessions").json()["session_id"]
    t = 0
    for k in (1, 3, 5):
        r = app.post(f"/v1/sessions/{sid}/step", json={"inputs": x[t:t + k].tolist()})
        t += k
        assert r.status_code == 200, r.text
        assert r.json()["steps"] == t
        close(r.json()["outputs"], models.torch_reference(ckpt, x[None, :t])[0])
    assert app.delete(f"/v1/sessions/{sid}").status_code == 200
    r = app.post(f"/v1/sessions/{sid}/step", json={"inputs": x[:1].tolist()})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"


def test_two_sessions_keep_their_own_state(app):
    p = Predictor.load(app.app.state.server.settings.model)
    a, b = models.raw_inputs(np.random.default_rng(5), [4, 4])
    sa, sb = (app.post("/v1/sessions").json()["session_id"] for _ in range(2))
    for t in range(4):  # interleaved
        ya = app.post(f"/v1/sessions/{sa}/step", json={"inputs": [a[t].tolist()]}).json()["outputs"]
        yb = app.post(f"/v1/sessions/{sb}/step", json={"inputs": [b[t].tolist()]}).json()["outputs"]
    close(ya, p.predict(a[None])[0])
    close(yb, p.predict(b[None])[0])
    for sid in (sa, sb):
        app.delete(f"/v1/sessions/{sid}")


def test_session_limit_answers_503(app):
    ids = [app.post("/v1/sessions").json()["session_id"] for _ in range(3)]
    r = app.post("/v1/sessions")
    assert r.status_code == 503 and "Retry-After" in r.headers and r.json()["error"]["code"] == "too_many_sessions"
    for sid in ids:
        app.delete(f"/v1/sessions/{sid}")
    assert app.post("/v1/sessions").status_code == 201


def test_full_queue_answers_503_with_retry_after(serve_model):
    with client(serve_model, max_queue=2) as c:
        r = c.post("/v1/predict", json={"inputs": [[[1.0, 2.0, 3.0]]] * 3})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "overloaded"
        assert c.post("/v1/predict", json={"inputs": [[[1.0, 2.0, 3.0]]] * 2}).status_code == 200
        assert 'lstm_rejected_total{reason="queue_full"} 1' in c.get("/metrics").text


GOOD = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
BAD_PREDICT = {
    "wrong feature count": ({"inputs": [[[1.0, 2.0]]]}, 422, "bad_input", "has 2 features, expected 3"),
    "wrong nesting (one sequence, not a batch)": ({"inputs": GOOD}, 422, "bad_nesting", "nested three deep"),
    "wrong nesting deeper in the batch": ({"inputs": [GOOD, [1.0, 2.0, 3.0]]}, 422, "bad_input", "sequence 1, step 0"),
    "a string": ({"inputs": [[[1.0, "2", 3.0]]]}, 422, "bad_input", 'feature 1 is "2", not a number'),
    "a null": ({"inputs": [[[1.0, None, 3.0]]]}, 422, "bad_input", "feature 1 is null"),
    "a boolean": ({"inputs": [[[1.0, True, 3.0]]]}, 422, "bad_input", "feature 1 is true"),
    "false": ({"inputs": [[[1.0, 2.0, False]]]}, 422, "bad_input", "feature 2 is false"),
    "a numeric string": ({"inputs": [[[1.0, "1.5", 3.0]]]}, 422, "bad_input", 'feature 1 is "1.5"'),
    "a long list in a step": ({"inputs": [[[1.0, list(range(500)), 3.0]]]}, 422, "bad_input", "feature 1 is [0, 1, 2"),
    "a list in a step": ({"inputs": [[[1.0, [2.0], 3.0]]]}, 422, "bad_input", "feature 1 is [2.0], not a number"),
    "an object in a step": ({"inputs": [[[1.0, {"a": 2}, 3.0]]]}, 422, "bad_input", "feature 1 is {"),
    "an integer beyond float64": ({"inputs": [[[1.0, 10**400, 3.0]]]}, 422, "bad_input", "feature 1 is not finite"),
    "beyond float32": ({"inputs": [[[1.0, 1e300, 3.0]]]}, 422, "non_finite", "float32"),
    "empty batch": ({"inputs": []}, 422, "empty_batch", "no sequences"),
    "empty sequence": ({"inputs": [GOOD, []]}, 422, "empty_sequence", "sequence 1 is empty"),
    "over-long sequence": ({"inputs": [[[1.0, 2.0, 3.0]] * 41]}, 422, "sequence_too_long", "41 steps"),
    "too many sequences": ({"inputs": [GOOD] * 9}, 413, "too_many_sequences", "9 sequences"),
    "no inputs key": ({"x": GOOD}, 422, "bad_body", 'missing "inputs"'),
    "inputs not a list": ({"inputs": 3}, 422, "bad_body", "not a list"),
    "body not an object": ([GOOD], 422, "bad_body", "not an object"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT))
def test_bad_predict_input_gets_a_4xx_that_says_why(app, case):
    body, status, code, words = BAD_PREDICT[case]
    r = app.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and words in err["message"], err
    if status == 422:
        assert err["expected"]
    assert app.post("/v1/predict", json={"inputs": [GOOD]}).status_code == 200  # still serving


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_inf_literals_are_refused(app, literal):
    r = app.post("/v1/predict", content=f'{{"inputs": [[[1.0, {literal}, 3.0]]]}}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "non_finite"


def test_invalid_json_is_400(app):
    r = app.post("/v1/predict", content=b'{"inputs": [[[1.0, 2.0,')
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"


def test_nesting_too_deep_for_any_parser_is_400(app):
    r = app.post("/v1/predict", content=b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json", r.text


def test_oversized_bodies_are_413_declared_or_streamed(app):
    big = json.dumps({"inputs": [[[1.0, 2.0, 3.0]] * 40] * 8}).encode() + b" " * 20_000
    assert len(big) > 20_000
    r = app.post("/v1/predict", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = app.post("/v1/predict", content=iter([big[:10_000], big[10_000:]]))  # chunked: no Content-Length
    assert r.status_code == 413


def test_bad_step_inputs(app):
    sid = app.post("/v1/sessions").json()["session_id"]
    cases = [({"inputs": [1.0, 2.0, 3.0]}, "bad_nesting"), ({"inputs": []}, "empty_sequence"),
             ({"inputs": [[1.0, 2.0]]}, "bad_input"), ({"inputs": [[1.0, 2.0, 3.0]] * 41}, "sequence_too_long")]
    cases += [({"inputs": [[1.0, v, 3.0]]}, "bad_input") for v in (True, False, None, "1.5")]
    for body, code in cases:
        r = app.post(f"/v1/sessions/{sid}/step", json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
    assert app.post(f"/v1/sessions/{sid}/step", json={"inputs": [GOOD[0]]}).json()["steps"] == 1
    app.delete(f"/v1/sessions/{sid}")


def test_unknown_session_ids_are_404(app):
    assert app.post("/v1/sessions/nope/step", json={"inputs": [GOOD[0]]}).status_code == 404
    r = app.delete("/v1/sessions/nope")
    assert r.status_code == 404 and "POST /v1/sessions" in r.json()["error"]["expected"]


def test_sessions_need_a_stateful_model(ckpt, tmp_path):
    plain = models.export(ckpt, tmp_path / "plain.onnx", lengths=True)
    with client(plain) as c:
        r = c.post("/v1/sessions")
        assert r.status_code == 409 and "--stateful" in r.json()["error"]["expected"]
        assert c.post("/v1/predict", json={"inputs": [GOOD, GOOD[:1]]}).status_code == 200


def test_model_health_and_metrics(app):
    info = app.get("/v1/model").json()
    assert info["num_features"] == models.F and info["stateful"] and info["lengths_input"]
    assert "CPUExecutionProvider" in info["providers"]
    assert {i["name"] for i in info["inputs"]} == {"x", "lengths", "h0", "c0"}
    assert info["machine"]["cpu"] == fingerprint()["cpu"] and info["machine"]["cores"]["usable"] >= 1
    assert app.get("/healthz").json() == {"status": "ok"}
    assert app.get("/readyz").json()["status"] == "ready"
    app.post("/v1/predict", json={"inputs": [GOOD]})
    text = app.get("/metrics").text
    for name in ("lstm_requests_total{", "lstm_request_latency_seconds_bucket{", "lstm_batch_size_bucket{",
                 "lstm_queue_depth ", "lstm_sessions_active "):
        assert name in text, name
    assert 'route="/v1/predict",status="200"' in text
    assert app.get("/nowhere").json()["error"]["code"] == "http"


def test_hot_routes_refuse_other_methods_and_leave_other_paths_to_fastapi(app):
    r = app.get("/v1/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    assert r.json()["error"]["code"] == "method_not_allowed"
    for path in ("/v1/sessions//step", "/v1/sessions/a/b/step", "/v1/predict/"):
        assert app.post(path, json={"inputs": [GOOD[0]]}).status_code == 404, path
    assert 'route="/v1/predict",status="405"' in app.get("/metrics").text


def npy_bytes(arr) -> bytes:
    fp = io.BytesIO()
    np.save(fp, np.asarray(arr, np.float32))
    return fp.getvalue()


def test_npy_bodies_give_the_json_answers(app):
    xs = models.raw_inputs(np.random.default_rng(5), [6, 6, 6])
    as_json = app.post("/v1/predict", json={"inputs": [x.tolist() for x in xs]}).json()["outputs"]
    r = app.post("/v1/predict", content=npy_bytes(np.stack(xs)),
                 headers={"content-type": "application/x-npy; charset=binary"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.asarray(r.json()["outputs"]), np.asarray(as_json))
    r = app.post("/v1/predict", content=npy_bytes(xs[0]), headers={"content-type": "application/x-npy"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_shape"  # [S, F] is a step body's shape


def test_npy_session_steps_continue_like_json_ones(app):
    x = models.raw_inputs(np.random.default_rng(6), [4])[0]
    a, b = (app.post("/v1/sessions").json()["session_id"] for _ in range(2))
    for chunk in (x[:3], x[3:]):
        ja = app.post(f"/v1/sessions/{a}/step", json={"inputs": chunk.tolist()}).json()
        nb = app.post(f"/v1/sessions/{b}/step", content=npy_bytes(chunk),
                      headers={"content-type": "application/x-npy"}).json()
        assert ja["steps"] == nb["steps"]
        np.testing.assert_array_equal(np.asarray(ja["outputs"]), np.asarray(nb["outputs"]))
    for sid in (a, b):
        app.delete(f"/v1/sessions/{sid}")


def test_an_input_that_overflows_once_normalized_is_refused_alone(tmp_path):
    """Checked per request before batching: the 422 names the sequence, and its batch-mates get their numbers."""
    ckpt = models.checkpoint()
    ckpt.normalization.input_std[:] = 1e-30  # normalization scales by 1e30: 1e9 would become inf
    model = models.export(ckpt, tmp_path / "tiny-std.onnx", stateful=True, lengths=True)
    alone = Predictor.load(model)
    good = np.full((3, models.F), 1.0, np.float32)
    with client(model, max_batch=8, max_wait_ms=200.0) as c:
        with ThreadPoolExecutor(4) as pool:
            bad, ok, step = pool.map(lambda req: c.post(req[0], **req[1]), [
                ("/v1/predict", {"json": {"inputs": [good.tolist(), (good * 1e9).tolist()]}}),
                ("/v1/predict", {"json": {"inputs": [good.tolist()]}}),
                (f"/v1/sessions/{c.post('/v1/sessions').json()['session_id']}/step",
                 {"json": {"inputs": (good * 1e9).tolist()}})])
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "out_of_range", bad.text
    assert "inputs[1]" in bad.json()["error"]["message"]
    assert step.status_code == 422 and step.json()["error"]["code"] == "out_of_range", step.text
    assert ok.status_code == 200, ok.text
    close(ok.json()["outputs"][0], alone.predict(good[None])[0])


def test_a_model_with_per_series_statistics_is_refused_at_start():
    from types import SimpleNamespace

    import pytest

    from lstm_onnx.serving.app import check_servable

    per_series = SimpleNamespace(series_normalization={"a": None}, inputs={"x": SimpleNamespace(shape=["b", "s", 2])})
    with pytest.raises(ValueError, match="normalizes each series with its own statistics"):
        check_servable(per_series, "m.onnx")
    check_servable(SimpleNamespace(series_normalization={}, inputs=per_series.inputs), "m.onnx")
