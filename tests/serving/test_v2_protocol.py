"""The Open Inference Protocol (v2) on a real uvicorn server, driven by Triton's own client (tritonclient.http)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.settings import ServeSettings
from tests import models
from tests.harness import record
from tests.serving.harness_tools import Live

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the triton extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOL = default_tolerance("float32")
NAME = "lstm"


def close(a, b):
    np.testing.assert_allclose(a, b, atol=TOL.atol, rtol=TOL.rtol)


@pytest.fixture(scope="module")
def live(serve_model):
    settings = ServeSettings(model=str(serve_model), port=1, model_name=NAME, max_wait_ms=20.0, max_items=8,
                             max_seq_len=60, max_sessions=3)
    with Live(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    c = httpclient.InferenceServerClient(f"127.0.0.1:{live.port}", concurrency=4)
    yield c
    c.close()


@pytest.fixture(scope="module")
def predictor(serve_model):
    return Predictor.load(serve_model)


def x_input(x: np.ndarray, binary: bool):
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    return inp.set_data_from_numpy(x, binary_data=binary)


def post(live, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{live.port}{path}", body, headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_metadata(client, predictor):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_model_metadata(NAME)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert meta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, -1, predictor.num_features]}
    assert meta["outputs"][0]["name"] == "y" and meta["outputs"][0]["shape"] == [-1, models.O]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'other' is not found"):
        client.get_model_metadata("other")
    assert not client.is_model_ready("other")


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_equals_predictor(client, predictor, ckpt, binary_in, binary_out):
    x = np.stack(models.raw_inputs(np.random.default_rng(1), [9, 9, 9]))
    result = client.infer(NAME, [x_input(x, binary_in)], outputs=[httpclient.InferRequestedOutput("y", binary_out)])
    y = result.as_numpy("y")
    assert y.dtype == np.float32 and y.shape == (3, models.O)
    close(y, predictor.predict(x))
    close(y, models.torch_reference(ckpt, x))  # and independently of ORT


def test_binary_output_bytes_are_exact(client, predictor):
    """The binary tail is y's float32 little-endian bytes, row-major: a byte swap or a transposed shape differs."""
    x = np.stack(models.raw_inputs(np.random.default_rng(2), [5, 5]))
    result = client.infer(NAME, [x_input(x, True)], outputs=[httpclient.InferRequestedOutput("y", True)])
    raw = result._buffer  # the bytes after the JSON header, as tritonclient read them
    as_json = client.infer(NAME, [x_input(x, False)], outputs=[httpclient.InferRequestedOutput("y", False)])
    expected = as_json.as_numpy("y").astype("<f4")
    assert raw == expected.tobytes()
    assert raw != expected.astype(">f4").tobytes() and raw != expected.T.copy().tobytes()
    close(expected, predictor.predict(x))


def test_lengths_and_default_outputs(client, predictor):
    """No outputs named: tritonclient asks binary_data_output; lengths pad a batch as Predictor's lengths do."""
    x = np.stack(models.raw_inputs(np.random.default_rng(3), [7, 7]))
    lengths = np.array([7, 3], np.int32)
    inp = httpclient.InferInput("lengths", [2], "INT32").set_data_from_numpy(lengths)
    y = client.infer(NAME, [x_input(x, True), inp], model_version="1").as_numpy("y")
    close(y, predictor.predict(x, lengths=lengths))
    close(y[1], predictor.predict(x[1:, :3])[0])


def test_stream_in_chunks_equals_one_pass_and_streams_do_not_mix(client, predictor):
    """Two interleaved sequences (an int and a string id) stepped in chunks; each must equal one whole pass."""
    rng = np.random.default_rng(4)
    xa, xb = models.raw_inputs(rng, [12, 12])
    cuts = [(0, 3), (3, 4), (4, 9), (9, 12)]
    ys = {1: [], "b": []}
    for k, (t0, t1) in enumerate(cuts):
        for sid, x in ((1, xa), ("b", xb)):
            r = client.infer(NAME, [x_input(x[None, t0:t1], k % 2 == 0)], sequence_id=sid,
                             sequence_start=k == 0, sequence_end=k == len(cuts) - 1)
            ys[sid].append(r.as_numpy("y"))
    close(ys[1][-1], predictor.predict(xa[None]))
    close(ys["b"][-1], predictor.predict(xb[None]))
    assert not np.allclose(ys[1][-1], ys["b"][-1])
    with pytest.raises(InferenceServerException, match="sequence 1 is not open"):  # ended above
        client.infer(NAME, [x_input(xa[None, :2], True)], sequence_id=1)


def test_sequence_start_resets_state(client, predictor):
    x = models.raw_inputs(np.random.default_rng(5), [6])[0]
    client.infer(NAME, [x_input(x[None], True)], sequence_id=7, sequence_start=True)
    again = client.infer(NAME, [x_input(x[None], True)], sequence_id=7, sequence_start=True, sequence_end=True)
    close(again.as_numpy("y"), predictor.predict(x[None]))


def raw_request(x: np.ndarray, extra: dict | None = None, binary: bool = False, size: int | None = None):
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape)}
    if binary:
        tensor["parameters"] = {"binary_data_size": x.nbytes if size is None else size}
    else:
        tensor["data"] = x.tolist()  # nested lists, which the protocol also allows
    head = json.dumps({"inputs": [tensor], **(extra or {})}).encode()
    body = head + (x.astype("<f4").tobytes() if binary else b"")
    return body, ({"Inference-Header-Content-Length": str(len(head))} if binary else {})


def test_nested_json_data_and_request_id(live, predictor):
    x = np.stack(models.raw_inputs(np.random.default_rng(6), [4]))
    status, reply = post(live, f"/v2/models/{NAME}/infer", *raw_request(x, {"id": "r1"}))
    assert status == 200 and reply["id"] == "r1" and reply["model_name"] == NAME
    close(np.array(reply["outputs"][0]["data"], np.float32).reshape(reply["outputs"][0]["shape"]), predictor.predict(x))


BAD = {
    "wrong datatype": lambda x: (json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4, 3],
                                                          "data": x.ravel().tolist()}]}).encode(), {}),
    "shape/data mismatch": lambda x: (json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5, 3],
                                                               "data": x.ravel().tolist()}]}).encode(), {}),
    "bad binary size": lambda x: raw_request(x, binary=True, size=x.nbytes - 4),
    "missing x": lambda x: (b'{"inputs": [{"name": "lengths", "datatype": "INT32", "shape": [1], "data": [1]}]}', {}),
    "unknown output": lambda x: raw_request(x, {"outputs": [{"name": "hn"}]}),
    "NaN": lambda x: raw_request(np.full_like(x, np.nan), binary=True),
    "overflow after normalization": lambda x: raw_request(np.full_like(x, 3e38), binary=True),
    "string values": lambda x: (json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 3],
                                                         "data": ["1", 2, 3]}]}).encode(), {}),
    "header length past the body": lambda x: (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}),
    "unknown sequence": lambda x: raw_request(x, {"parameters": {"sequence_id": 424242}}),
    "not JSON": lambda x: (b"{nope", {}),
    # binary_data_output is a JSON boolean; the string "false" was truthy and got a binary reply
    "binary_data_output as a string": lambda x: raw_request(x, {"parameters": {"binary_data_output": "false"}}),
    "binary_data as a number": lambda x: raw_request(x, {"outputs": [{"name": "y", "parameters": {"binary_data": 0}}]}),
    # string ids stay in memory while a sequence is open: 3.9 MB ids took 815 MiB for 250 sequences
    "a 1 MB sequence_id": lambda x: raw_request(x[:1], {"parameters": {"sequence_id": "s" * (1 << 20),
                                                                       "sequence_start": True}}),
    "a sequence_id past 257 characters": lambda x: raw_request(x[:1], {"parameters": {"sequence_id": "s" * 257,
                                                                                     "sequence_start": True}}),
    "a negative sequence_id": lambda x: raw_request(x[:1], {"parameters": {"sequence_id": -3, "sequence_start": True}}),
}


@pytest.mark.harness
@pytest.mark.parametrize("case", BAD)
def test_bad_requests_get_4xx_json(live, case):
    x = np.stack(models.raw_inputs(np.random.default_rng(7), [4]))
    status, reply = post(live, f"/v2/models/{NAME}/infer", *BAD[case](x))
    clean = 400 <= status < 500 and isinstance(reply.get("error"), str) and bool(reply["error"])
    record("v2", clean, f"{case}: {status} {str(reply)[:120]}")
    assert clean, (status, reply)


@pytest.mark.harness
def test_an_empty_batch_is_400_not_413(live):
    """[0, S, F] is a malformed request, not one over the size limit."""
    body, headers = raw_request(np.zeros((0, 4, models.F), np.float32), binary=True)
    status, reply = post(live, f"/v2/models/{NAME}/infer", body, headers)
    record("v2", status == 400, f"empty batch: {status} {reply}")
    assert status == 400 and "empty batch" in reply["error"], (status, reply)


@pytest.mark.harness
@pytest.mark.parametrize("path", [f"/v2/models/{NAME}/versions//infer", f"/v2/models/{NAME}/versions/2/infer"])
def test_a_missing_or_wrong_version_is_404(live, path):
    x = np.stack(models.raw_inputs(np.random.default_rng(12), [4]))
    status, reply = post(live, path, *raw_request(x))
    record("v2", status == 404, f"{path}: {status}")
    assert status == 404 and isinstance(reply["error"], str), (status, reply)


def test_the_spec_shapes_of_model_ready_and_server_metadata(live):
    base = f"http://127.0.0.1:{live.port}"
    with urllib.request.urlopen(f"{base}/v2/models/{NAME}/ready", timeout=10) as r:
        assert json.loads(r.read()) == {"name": NAME, "ready": True}
    with urllib.request.urlopen(f"{base}/v2/", timeout=10) as r:  # no redirect: urllib would follow it
        assert r.status == 200 and r.url == f"{base}/v2/" and json.loads(r.read())["name"] == "lstm-onnx-pipeline"


@pytest.mark.harness
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"])
def test_probes_answer_head(live, path):
    req = urllib.request.Request(f"http://127.0.0.1:{live.port}{path}", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, b""
    record("v2", status == 200, f"HEAD {path}: {status}")
    assert status == 200 and body == b""


def test_unknown_model_is_404_and_metrics_count_v2(live):
    x = np.stack(models.raw_inputs(np.random.default_rng(8), [2]))
    status, reply = post(live, "/v2/models/nope/infer", *raw_request(x))
    assert status == 404 and reply["error"].startswith("Request for unknown model: 'nope' is not found")
    with urllib.request.urlopen(f"http://127.0.0.1:{live.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'route="/v2/models/{name}/infer",status="200"' in text and 'status="404"' in text


def test_bearer_token_guards_v2_but_not_its_health(serve_model):
    with Live(ServeSettings(model=str(serve_model), port=1, auth_token="s3cret")) as server:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        assert c.is_server_live() and c.is_server_ready()
        x = np.stack(models.raw_inputs(np.random.default_rng(9), [3]))
        with pytest.raises(InferenceServerException, match="bearer token"):
            c.infer("serve", [x_input(x, True)])
        y = c.infer("serve", [x_input(x, True)], headers={"Authorization": "Bearer s3cret"}).as_numpy("y")
        assert y.shape == (1, models.O)
        c.close()


def test_concurrent_v2_requests_share_batches(live, client, predictor):
    """The dynamic batcher applies to v2: concurrent infers coalesce (fewer runs than requests), each still exact."""
    xs = [np.stack(models.raw_inputs(np.random.default_rng(20 + k), [6])) for k in range(12)]

    def runs() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{live.port}/metrics", timeout=10) as r:
            return float(r.read().decode().split("\nlstm_batch_size_count ")[1].split()[0])

    before = runs()
    pending = [client.async_infer(NAME, [x_input(x, True)]) for x in xs]
    for x, p in zip(xs, pending):
        close(p.get_result().as_numpy("y"), predictor.predict(x))
    assert runs() - before < len(xs), "no v2 request was batched with another"


def test_session_limit_applies_to_sequences(client):
    x = np.stack(models.raw_inputs(np.random.default_rng(30), [2]))
    opened = []
    with pytest.raises(InferenceServerException, match="session limit"):
        for sid in range(100, 110):  # max_sessions=3 in this server
            client.infer(NAME, [x_input(x, True)], sequence_id=sid, sequence_start=True)
            opened.append(sid)
    assert len(opened) <= 3
    for sid in opened:
        client.infer(NAME, [x_input(x, True)], sequence_id=sid, sequence_end=True)


def test_stateless_model_refuses_sequence_ids(ckpt, tmp_path):
    model = models.export(ckpt, tmp_path / "plain.onnx")
    with Live(ServeSettings(model=str(model), port=1)) as server:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        x = np.stack(models.raw_inputs(np.random.default_rng(31), [3]))
        with pytest.raises(InferenceServerException, match="no h0/c0 inputs") as err:
            c.infer("plain", [x_input(x, True)], sequence_id=5, sequence_start=True)
        assert err.value.status() == "400"
        close(c.infer("plain", [x_input(x, False)]).as_numpy("y"), Predictor.load(model).predict(x))
        c.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(client, predictor, algorithm, monkeypatch):
    """tritonclient's request/response_compression_algorithm: Content-Encoding was ignored (a 400 on the
    header length), and Accept-Encoding too."""
    from lstm_onnx.serving import hotpath

    monkeypatch.setattr(hotpath, "COMPRESS_MIN_BYTES", 0)  # these replies are small: compress them anyway
    x = np.stack(models.raw_inputs(np.random.default_rng(40), [9, 9]))
    for binary in (True, False):
        result = client.infer(NAME, [x_input(x, binary)], request_compression_algorithm=algorithm,
                              response_compression_algorithm=algorithm)
        close(result.as_numpy("y"), predictor.predict(x))


def raw_post(live, path: str, body: bytes, headers: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{live.port}{path}", body, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_a_compressed_response_is_what_accept_encoding_asks(live, predictor, monkeypatch):
    import gzip

    from lstm_onnx.serving import hotpath

    x = np.stack(models.raw_inputs(np.random.default_rng(41), [5]))
    body, headers = raw_request(x)
    status, got_headers, _ = raw_post(live, f"/v2/models/{NAME}/infer", body, {**headers, "Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in {k.lower() for k in got_headers}  # small: not worth it
    monkeypatch.setattr(hotpath, "COMPRESS_MIN_BYTES", 0)
    status, got_headers, raw = raw_post(live, f"/v2/models/{NAME}/infer", body, {**headers, "Accept-Encoding": "gzip"})
    assert status == 200 and got_headers["content-encoding"] == "gzip"
    reply = json.loads(gzip.decompress(raw))
    close(np.array(reply["outputs"][0]["data"], np.float32).reshape(reply["outputs"][0]["shape"]), predictor.predict(x))
    status, got_headers, raw = raw_post(live, f"/v2/models/{NAME}/infer", body,
                                        {**headers, "Accept-Encoding": "gzip;q=0, br"})
    assert status == 200 and "content-encoding" not in {k.lower() for k in got_headers} and json.loads(raw)["outputs"]


@pytest.mark.harness
@pytest.mark.parametrize("case, status", [("not gzip", 400), ("truncated", 400), ("bomb", 413), ("br", 415)])
def test_bad_compressed_bodies(live, case, status):
    import gzip

    x = np.stack(models.raw_inputs(np.random.default_rng(42), [4]))
    body, headers = raw_request(x)
    packed = gzip.compress(body)
    encoded = {"not gzip": (body, "gzip"), "truncated": (packed[:-9], "gzip"),
               "bomb": (gzip.compress(b" " * (8 << 20)), "gzip"),  # 8 MiB of spaces in ~8 KiB: over the 4 MiB limit
               "br": (body, "br")}[case]
    got, _, raw = raw_post(live, f"/v2/models/{NAME}/infer", encoded[0], {**headers, "Content-Encoding": encoded[1]})
    reply = json.loads(raw)
    record("v2", got == status and isinstance(reply.get("error"), str), f"{case}: {got} {reply}")
    assert got == status and isinstance(reply["error"], str), (got, reply)


def test_model_config_is_the_deploy_triton_config(client, serve_model):
    """/config is the ModelConfig `deploy triton` writes (parsed by Triton's own protobuf schema, both ways)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from lstm_onnx.serving.triton_config import config_text
    from lstm_onnx.serving.triton_graph import triton_model
    from lstm_onnx.serving.triton_options import TritonOptions

    got = client.get_model_config(NAME)
    served = json_format.ParseDict(got, model_config_pb2.ModelConfig())
    options = TritonOptions(name=NAME, max_batch_size=64, max_queue_delay_us=20000, max_queue_size=1024)
    written = text_format.Parse(config_text(options, triton_model(serve_model)[1]), model_config_pb2.ModelConfig())
    assert served == written
    assert got["name"] == NAME and got["sequence_batching"]["state"][0]["input_name"] == "h0"
    assert [i["name"] for i in got["input"]] == ["x", "lengths"] and got["input"][0]["dims"] == ["-1", str(models.F)]


def test_statistics_and_repository_index(client, predictor):
    before = client.get_inference_statistics(NAME)["model_stats"][0]
    xs = [np.stack(models.raw_inputs(np.random.default_rng(50 + k), [4] * (k + 1))) for k in range(3)]
    for x in xs:
        client.infer(NAME, [x_input(x, True)])
    after = client.get_inference_statistics(NAME)["model_stats"]
    assert len(after) == 1 and after[0]["name"] == NAME and after[0]["version"] == "1"
    after = after[0]
    assert after["inference_count"] - before["inference_count"] == 1 + 2 + 3  # sequences, as Triton counts them
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert 1 <= after["execution_count"] - before["execution_count"] <= 6
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in after["batch_stats"]) == \
        after["inference_stats"]["compute_infer"]["count"]
    assert client.get_inference_statistics()["model_stats"][0]["name"] == NAME
    assert client.get_model_repository_index() == [{"name": NAME, "version": "1", "state": "READY"}]
