"""int8 models: dynamic quantization takes one activation scale per run, so batch-mates would change a request's
numbers. The server runs each sequence of such a model alone, and says so in /v1/model."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.settings import ServeSettings
from tests import models

TOL = default_tolerance("float32")  # the same runs, so float32's tolerance, not int8's


@pytest.fixture(scope="module")
def int8_model(ckpt, tmp_path_factory):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("m") / "int8.onnx"
    export_checkpoint(ckpt, out, ExportOptions(lengths=True, quantize="int8"))
    return out


def mixed_requests(rng):
    """Requests of one or several sequences, lengths 1..14, some scaled far from the others (a batch-mate with
    large values widens the shared quantization range)."""
    out = []
    for k in range(16):
        xs = models.raw_inputs(rng, [int(n) for n in rng.integers(1, 15, 1 + k % 3)], scale=1 + 20 * (k % 4 == 0))
        out.append(xs)
    return out


def test_batch_mates_would_change_an_int8_result(int8_model):
    """What the server guards against (so the test below can fail): the same sequence, run with others."""
    p = Predictor.load(int8_model)
    x, big = models.raw_inputs(np.random.default_rng(0), [6, 6])
    alone = p.predict(x[None])[0]
    together = p.predict(np.stack([x, big * 20]))[0]
    assert np.abs(together - alone).max() > 10 * (TOL.atol + TOL.rtol * np.abs(alone).max())


def test_an_int8_model_serves_each_sequence_as_if_alone(int8_model):
    alone = Predictor.load(int8_model)
    requests = mixed_requests(np.random.default_rng(1))
    with TestClient(create_app(ServeSettings(model=str(int8_model), max_batch=16, max_wait_ms=100.0))) as c:
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda xs: c.post("/v1/predict", json={"inputs": [x.tolist() for x in xs]}),
                                    requests))
        info = c.get("/v1/model").json()["batching"]
        metrics = c.get("/metrics").text
    for xs, r in zip(requests, replies):
        assert r.status_code == 200, r.text
        for x, y in zip(xs, r.json()["outputs"]):
            np.testing.assert_allclose(y, alone.predict(x[None])[0], atol=TOL.atol, rtol=TOL.rtol)
    assert info["cross_request"] is False and info["max_batch"] == 1 and "int8" in info["why"]
    assert "lstm_batch_size_bucket{le=\"1\"} " in metrics and "lstm_batch_size_count " in metrics
    runs = float(metrics.split("lstm_batch_size_count ")[1].split()[0])
    assert runs == sum(len(xs) for xs in requests)  # one run per sequence


def test_a_float_model_still_batches(serve_model):
    with TestClient(create_app(ServeSettings(model=str(serve_model)))) as c:
        info = c.get("/v1/model").json()["batching"]
    assert info == {"cross_request": True, "max_batch": 64, "how": "padded with sequence_lens"}
