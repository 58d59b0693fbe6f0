"""Triton's own example clients (tests/serving/triton_examples, with only the model's names, shapes and
expected values changed) run as they are against a live server: each exits 0 and says it passed. The expected
values come from a local Predictor on the same export, handed to the example in an .npz ($EXPECTED_NPZ)."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the triton extra)")
pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the triton extra)")

EXAMPLES = Path(__file__).parent / "triton_examples"
NAME = "lstm"  # the model name the examples were changed to


@pytest.fixture(scope="module")
def predictor(serve_model):
    return Predictor.load(serve_model)


def run_example(script: str, url: str, expected: dict[str, np.ndarray], tmp_path) -> tuple[int, str]:
    path = tmp_path / "expected.npz"
    np.savez(path, **expected)
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "-u", url], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "EXPECTED_NPZ": str(path)})
    return done.returncode, done.stdout + done.stderr


def infer_expected(predictor) -> dict[str, np.ndarray]:
    """What the infer examples send: x = 0, 1/8, ... 47/8 over [1, 16, 3], lengths [11]."""
    x = np.arange(48, dtype=np.float32).reshape(1, 16, 3) / 8
    return {"y": predictor.predict(x, np.array([11], np.int32))}


def sequence_expected(predictor) -> dict[str, np.ndarray]:
    """The stream example's three sequences, one [1, 1, 3] step per request filled with the value: each
    response is one pass over that sequence's prefix."""
    values = [11, 7, 5, 3, 2, 0, 1]
    sequences = {"int0": [0] + values, "int1": [100] + [-v for v in values], "string0": [20] + [-v for v in values]}
    out = {}
    for key, steps in sequences.items():
        x = np.repeat(np.asarray(steps, np.float32)[None, :, None], 3, axis=2)
        out[key] = np.stack([predictor.predict(x[:, :k + 1]) for k in range(len(steps))])
    return out


def http_url(grpc_live) -> str:
    return f"127.0.0.1:{grpc_live.port}"


def grpc_url(grpc_live) -> str:
    return f"127.0.0.1:{grpc_live.settings.grpc_port}"


def test_simple_http_infer_client(grpc_live, predictor, tmp_path):
    rc, out = run_example("simple_http_infer_client.py", http_url(grpc_live), infer_expected(predictor), tmp_path)
    assert rc == 0, out
    # The example prints no PASS line: it ends on the unknown-model error it expects.
    assert out.count("y = ") == 2 and "Request for unknown model" in out.rstrip().splitlines()[-1], out


def test_simple_grpc_infer_client(grpc_live, predictor, tmp_path):
    rc, out = run_example("simple_grpc_infer_client.py", grpc_url(grpc_live), infer_expected(predictor), tmp_path)
    assert rc == 0 and out.count("y = ") == 2 and "PASS: infer" in out, out


def test_simple_grpc_async_infer_client(grpc_live, predictor, tmp_path):
    rc, out = run_example("simple_grpc_async_infer_client.py", grpc_url(grpc_live), infer_expected(predictor), tmp_path)
    # Without an answer in 10 s it exits 0 saying nothing: the PASS line is the verdict.
    assert rc == 0 and out.count("y = ") == 1 and "PASS: Async infer" in out, out


def test_simple_http_async_infer_client(grpc_live, predictor, tmp_path):
    rc, out = run_example("simple_http_async_infer_client.py", http_url(grpc_live), infer_expected(predictor), tmp_path)
    assert rc == 0 and out.count("y = ") == 2, out  # no PASS line: both requests' checks ran


def test_simple_http_health_metadata(grpc_live, tmp_path):
    rc, out = run_example("simple_http_health_metadata.py", http_url(grpc_live), {}, tmp_path)
    # It prints no PASS line (and exits 0 when it cannot connect): its last line is the model's metadata.
    assert rc == 0, out
    server, model = (ast.literal_eval(line) for line in out.rstrip().splitlines()[-2:])
    assert "sequence" in server["extensions"] and model["name"] == NAME, out


def test_simple_grpc_sequence_stream_infer_client(grpc_live, predictor, tmp_path):
    rc, out = run_example("simple_grpc_sequence_stream_infer_client.py", grpc_url(grpc_live),
                          sequence_expected(predictor), tmp_path)
    assert rc == 0 and "PASS: Sequence" in out, out
    assert len(re.findall(r"^\[\d\] ", out, re.MULTILINE)) == 8, out  # every step was compared


def test_the_stream_example_fails_on_a_wrong_step(grpc_live, predictor, tmp_path):
    expected = sequence_expected(predictor)
    expected["string0"][5] += 1e-3  # past the examples' float32 tolerance (1e-5 + 1e-5 * |y|)
    rc, out = run_example("simple_grpc_sequence_stream_infer_client.py", grpc_url(grpc_live), expected, tmp_path)
    assert rc == 1 and "[ expected ]" in out and "PASS" not in out, out
