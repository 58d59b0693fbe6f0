"""Ray Serve with 2 model replicas on loopback: parity with Predictor, a stream whose steps land on different
replicas, signed state tokens, the same 4xx JSON as our server, a replica killed under load, the toy protocol
(tests/serving/toy_protocol.py) served by the same ingress once registered, and v2 over gRPC through Ray's gRPC
proxy. One Ray cluster and one Serve app for the whole module (ray.init costs seconds)."""
from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance

ray = pytest.importorskip("ray", reason="Ray Serve tests need the ray extra (pip install 'lstm-onnx-pipeline[ray]')")
serve = pytest.importorskip("ray.serve", reason="Ray Serve tests need ray[serve]")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow
TOL = default_tolerance("float32")
APP = "lstm"


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=TOL.atol, rtol=TOL.rtol)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_actors() -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP}#Model#"))


def settings_for(serve_model):
    from lstm_onnx.serving.settings import ServeSettings

    return ServeSettings(model=str(serve_model), replicas=2, max_wait_ms=1.0, max_body_bytes=50_000, max_sessions=2)


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cluster(serve_model, grpc_port):
    from ray import cloudpickle

    from lstm_onnx.serving import protocols
    from lstm_onnx.serving.ray_app import build, grpc_options
    from lstm_onnx.serving.settings import ServeSettings
    from tests.serving import toy_protocol

    cloudpickle.register_pickle_by_value(toy_protocol)  # the replicas need not import the tests
    ray.init(num_cpus=2, include_dashboard=False, namespace=f"lstm-test-{uuid.uuid4().hex[:8]}",
             log_to_driver=False, configure_logging=False)
    port = free_port()
    try:
        # gRPC needs tritonclient[grpc]; without it the module's HTTP tests still run
        grpc = {} if importlib.util.find_spec("tritonclient") is None else grpc_options(
            ServeSettings(grpc_port=grpc_port))
        serve.start(http_options={"host": "127.0.0.1", "port": port}, **grpc)
        with pytest.MonkeyPatch.context() as patch:  # the registry line, in the driver that builds the app
            patch.setattr(protocols, "PROTOCOLS", (*protocols.PROTOCOLS, toy_protocol.PROTOCOL))
            app = build(settings_for(serve_model))
        serve.run(app, name=APP, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def predictor(serve_model):
    return Predictor.load(serve_model)


def test_predict_equals_predictor(cluster, predictor):
    x = np.random.default_rng(0).normal(size=(3, 7, predictor.num_features)).astype(np.float32)
    r = cluster.post("/v1/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    assert r.headers["x-replica-id"]
    close(r.json()["outputs"], predictor.predict(x))
    assert cluster.get("/readyz").json() == {"status": "ready"}
    assert cluster.get("/v1/model").json()["engine"] == "ray"


def test_stream_across_replicas_equals_one_pass(cluster, predictor):
    x = np.random.default_rng(1).normal(size=(1, 30, predictor.num_features)).astype(np.float32)
    sid = cluster.post("/v1/sessions").json()["session_id"]
    replicas, t = set(), 0
    for k in (1, 2, 1, 3) * 5:  # chunks of uneven sizes, 40 steps at most
        if t + k > x.shape[1] or (len(replicas) >= 2 and t >= 12):
            break
        r = cluster.post(f"/v1/sessions/{sid}/step", json={"inputs": x[0, t:t + k].tolist()})
        assert r.status_code == 200, r.text
        t += k
        body = r.json()
        assert body["steps"] == t
        close(body["outputs"], predictor.predict(x[:, :t])[0])  # the step's y equals one pass over the prefix
        sid = body["session_id"]
        replicas.add(r.headers["x-replica-id"])
    assert len(replicas) >= 2, f"all steps landed on {replicas}"


def test_tampered_token_is_refused(cluster, predictor):
    from lstm_onnx.serving import state_token

    sid = cluster.post("/v1/sessions").json()["session_id"]
    step = {"inputs": [[0.5] * predictor.num_features]}
    good = cluster.post(f"/v1/sessions/{sid}/step", json=step).json()["session_id"]
    raw = bytearray(state_token.base64.urlsafe_b64decode(good))
    raw[20] ^= 1  # one bit of h
    bad = state_token.base64.urlsafe_b64encode(bytes(raw)).decode()
    r = cluster.post(f"/v1/sessions/{bad}/step", json=step)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"
    assert cluster.post("/v1/sessions/abc/step", json=step).status_code == 404


def test_bad_input_is_the_same_4xx_json(cluster, predictor):
    from lstm_onnx.serving.bodies import predict_arrays
    from lstm_onnx.serving.inputs import ApiError

    raw = b'{"inputs": [[[1.0]]]}'  # one feature; the model has more
    with pytest.raises(ApiError) as expected:
        predict_arrays(raw, "application/json", predictor.num_features, 256, 1024)
    r = cluster.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (expected.value.status, expected.value.body())
    assert cluster.post("/v1/predict", content=b"{").status_code == 400
    # v2 errors are the protocol's {"error": "<one line>"}, as on our server
    r = cluster.post("/v2/models/nope/infer", content=b"{}")
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    name = Path(cluster.get("/v1/model").json()["path"]).stem
    r = cluster.post(f"/v2/models/{name}/infer", content=b"{")
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_killed_replica_gives_correct_answers_or_clean_503s(cluster, predictor):
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(1, 5 + k % 4, predictor.num_features)).astype(np.float32) for k in range(16)]
    want = [predictor.predict(x) for x in xs]
    before = replica_actors()
    assert len(before) == 2, before
    stop = time.monotonic() + 4.0

    def client(k: int) -> list[tuple]:
        seen = []
        while time.monotonic() < stop:
            i = (k + len(seen)) % len(xs)
            try:
                r = cluster.post("/v1/predict", json={"inputs": xs[i].tolist()})
            except httpx.TransportError as exc:  # not expected; recorded so the assert below names it
                seen.append(("transport", repr(exc)))
                continue
            seen.append((i, r.status_code, r.headers.get("retry-after"), r.text))
        return seen

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, k) for k in range(8)]
        time.sleep(1.0)
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        seen = [s for f in futures for s in f.result()]
    ok = refused = 0
    for item in seen:
        assert item[0] != "transport", item
        i, status, retry_after, text = item
        if status == 200:
            close(json.loads(text)["outputs"], want[i])  # never a wrong number
            ok += 1
        else:
            assert status == 503 and retry_after, item  # a clean, retryable refusal
            assert json.loads(text)["error"]["code"] == "replica_unavailable"
            refused += 1
    assert ok > 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Ray Serve replaces the dead replica
        now = replica_actors()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.5)
    assert len(now) == 2 and before[0] not in now, now
    r = cluster.post("/v1/predict", json={"inputs": xs[0].tolist()})
    assert r.status_code == 200
    close(r.json()["outputs"], want[0])
    print(f"killed {before[0]}: {ok} answers, {refused} clean 503s")


@pytest.mark.parametrize("binary", [False, True])
def test_v2_infer_with_tritonclient_equals_predictor(cluster, predictor, binary):
    http = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
    name = cluster.get("/v2/models/serve").json()["name"]  # the model file's stem
    client = http.InferenceServerClient(str(cluster.base_url).split("//")[1].rstrip("/"))
    assert client.is_server_live() and client.is_model_ready(name)
    x = np.random.default_rng(3).normal(size=(2, 6, predictor.num_features)).astype(np.float32)
    inp = http.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = client.infer(name, [inp], outputs=[http.InferRequestedOutput("y", binary_data=binary)])
    close(out.as_numpy("y"), predictor.predict(x))
    r = cluster.post(f"/v2/models/{name}/infer", json={"inputs": [{"name": "x", "shape": [1, 1, 1],
                                                                   "datatype": "FP32", "data": [1.0]}]})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)  # the protocol's error shape


def test_the_toy_protocol_is_served_on_ray_with_its_error_shape(cluster, predictor):
    x = np.random.default_rng(4).normal(size=(1, 5, predictor.num_features)).astype(np.float32)
    r = cluster.post("/toy/serve/run", json={"x": x[0].tolist()})
    assert r.status_code == 200, r.text
    close(r.json()["y"], predictor.predict(x)[0])
    assert r.headers["x-replica-id"]
    assert cluster.get("/toy/serve").json() == {"model": "serve", "features": predictor.num_features}
    r = cluster.post("/toy/other/run", json={"x": x[0].tolist()})
    assert (r.status_code, r.json()) == (404, {"toy_error": "no_such_model", "status": 404})
    r = cluster.post("/toy/serve/run", content=b"{")
    assert (r.status_code, r.json()) == (400, {"toy_error": "bad_json", "status": 400})


# (method, path, body, headers): refused by the request core or a protocol's decoding. Not an unknown session: its
# id is a key on our server and a signed token on Ray, and each 404 says which it expected.
BAD_REQUESTS = [
    ("POST", "/v1/predict", b'{"inputs": [[[1.0]]]}', {}),
    ("POST", "/v1/predict", b"{", {}),
    ("POST", "/v1/predict", b'{"inputs": [[[1e39, 1, 1]]]}', {}),
    ("POST", "/v1/predict", b"[" * 60_000, {}),
    ("POST", "/v1/predict", b"x", {"content-encoding": "br"}),
    ("POST", "/v1/predict", b"not gzip", {"content-encoding": "gzip"}),
    ("POST", "/v1/predict", b"\x93NUMPY", {"content-type": "application/x-npy"}),
    ("GET", "/v1/predict", b"", {}),
    ("GET", "/nothing/here", b"", {}),
    ("POST", "/v2/models/nope/infer", b"{}", {}),
    ("POST", "/v2/models/serve/versions/7/infer", b"{}", {}),
    ("POST", "/v2/models/serve/infer", b"{", {}),
    ("POST", "/v2/models/serve/infer", b'{"inputs": [{"name": "x", "shape": [1, 1, 1], "datatype": "FP32", '
                                       b'"data": [1.0]}]}', {}),
    ("POST", "/v2/models/serve/infer", b"{}", {"inference-header-content-length": "x"}),
    ("GET", "/v2/models/nope", b"", {}),
    ("GET", "/v2/models/nope/ready", b"", {}),
    ("GET", "/v2/nothing", b"", {}),
    ("POST", "/toy/serve/run", b'{"x": [[1.0]]}', {}),
    ("GET", "/toy/serve/run", b"", {}),
]


def test_the_ingress_and_our_server_answer_the_same_4xx(cluster, serve_model, monkeypatch):
    """One protocol layer: the same bad request gets the same status and body from both servers."""
    from fastapi.testclient import TestClient

    from lstm_onnx.serving import protocols
    from lstm_onnx.serving.app import create_app
    from tests.serving import toy_protocol

    monkeypatch.setattr(protocols, "PROTOCOLS", (*protocols.PROTOCOLS, toy_protocol.PROTOCOL))
    with TestClient(create_app(settings_for(serve_model))) as local:
        for method, path, body, headers in BAD_REQUESTS:
            ours = local.request(method, path, content=body, headers=headers)
            theirs = cluster.request(method, path, content=body, headers=headers)
            assert 400 <= ours.status_code < 500, (path, body, ours.text)
            assert (theirs.status_code, theirs.json()) == (ours.status_code, ours.json()), (method, path, body)


# -- KServe v2 over Ray Serve's gRPC proxy (serving/ray_grpc.py), driven by tritonclient.grpc

@pytest.fixture(scope="module")
def grpc_client(cluster, grpc_port):
    grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the triton extra)")
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield c
    c.close()


def x_input(x: np.ndarray):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferInput("x", list(x.shape), "FP32").set_data_from_numpy(x)


def served_name(cluster) -> str:
    return Path(cluster.get("/v1/model").json()["path"]).stem


def grpc_error(call) -> tuple[str, str]:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        call()
    return err.value.status(), err.value.message()


def stream(grpc_port, send) -> list[tuple]:
    """Opens a ModelStreamInfer stream, lets send(client) queue requests, and returns (result, error) per
    request, in the order they were answered."""
    import queue

    import tritonclient.grpc as grpcclient

    answers = queue.Queue()
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    count = send(c)
    c.stop_stream()  # waits until every answer has come back
    c.close()
    got = [answers.get(timeout=30) for _ in range(count)]
    assert answers.empty()
    return got


def test_grpc_health_metadata_config(cluster, grpc_client, predictor):
    name = served_name(cluster)
    assert grpc_client.is_server_live() and grpc_client.is_server_ready() and grpc_client.is_model_ready(name)
    assert not grpc_client.is_model_ready("other")
    assert grpc_client.get_server_metadata(as_json=True)["name"] == "lstm-onnx-pipeline"
    meta = grpc_client.get_model_metadata(name, as_json=True)
    assert meta["name"] == name and [t["name"] for t in meta["inputs"]] == ["x", "lengths"]
    assert meta["inputs"][0]["shape"] == ["-1", "-1", str(predictor.num_features)]
    assert grpc_client.get_model_config(name, as_json=True)["config"]["name"] == name
    assert grpc_client.get_model_repository_index(as_json=True)["models"] == [
        {"name": name, "version": "1", "state": "READY"}]
    status, text = grpc_error(lambda: grpc_client.get_model_metadata("other"))
    assert status == "StatusCode.NOT_FOUND" and "Request for unknown model: 'other'" in text
    status, text = grpc_error(lambda: grpc_client.get_inference_statistics(name))
    assert status == "StatusCode.UNIMPLEMENTED" and "each model replica counts its own runs" in text


def test_grpc_infer_raw_and_typed_equal_predictor(cluster, grpc_client, grpc_port, predictor):
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    name = served_name(cluster)
    x = np.random.default_rng(4).normal(size=(3, 6, predictor.num_features)).astype(np.float32)
    # the same ONNX model under the same onnxruntime: only batching differs, which moves float32 sums by
    # rounding, so the float32 default tolerance (the other tests' too) holds
    close(grpc_client.infer(name, [x_input(x)]).as_numpy("y"), predictor.predict(x))
    typed = pb.ModelInferRequest(model_name=name, id="typed", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=list(x.shape), contents=pb.InferTensorContents(fp32_contents=x.ravel()))])
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(typed, timeout=30)
    want = predictor.predict(x)
    assert reply.id == "typed" and list(reply.outputs[0].shape) == list(want.shape)
    close(np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(want.shape), want)


def test_grpc_bad_request_is_invalid_argument_with_the_reason(cluster, grpc_client, predictor):
    from lstm_onnx.serving.inputs import ApiError
    from lstm_onnx.serving.protocols.v2_grpc import message

    x = np.ones((1, 2, predictor.num_features + 1), np.float32)  # one feature too many
    with pytest.raises(ApiError) as expected:
        from lstm_onnx.serving.v2_protocol import check_shape

        check_shape(list(x.shape), "x", predictor.num_features, 256, 1024)
    status, text = grpc_error(lambda: grpc_client.infer(served_name(cluster), [x_input(x)]))
    assert (status, text) == ("StatusCode.INVALID_ARGUMENT", message(expected.value))
    # a sequence needs the replica that holds its state; unary calls have no affinity
    x = np.ones((1, 2, predictor.num_features), np.float32)
    status, text = grpc_error(lambda: grpc_client.infer(served_name(cluster), [x_input(x)], sequence_id=7,
                                                        sequence_start=True))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "the sequence extension is not served on Ray Serve (no session affinity)" in text


def test_grpc_stream_answers_each_request_in_order(cluster, grpc_port, predictor):
    name = served_name(cluster)
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(1 + k % 2, 3 + k, predictor.num_features)).astype(np.float32) for k in range(5)]

    def send(c):
        for k, x in enumerate(xs):
            c.async_stream_infer(name, [x_input(x)], request_id=str(k))
        bad = np.ones((1, 2, 1), np.float32)
        c.async_stream_infer(name, [x_input(bad)], request_id="bad")
        c.async_stream_infer(name, [x_input(xs[0])], request_id="after")
        return len(xs) + 2

    got = stream(grpc_port, send)
    for k, x in enumerate(xs):
        result, error = got[k]
        assert error is None, error
        assert result.get_response().id == str(k)
        close(result.as_numpy("y"), predictor.predict(x))
    assert got[len(xs)][0] is None and "input 'x'" in got[len(xs)][1].message()  # the bad one: its error
    result, error = got[-1]  # and the stream went on
    assert error is None and result.get_response().id == "after"
    close(result.as_numpy("y"), predictor.predict(xs[0]))


def test_grpc_sequences_live_within_one_stream(cluster, grpc_port, predictor):
    name = served_name(cluster)
    x = np.random.default_rng(6).normal(size=(2, 9, predictor.num_features)).astype(np.float32)
    chunks = [(0, 2), (2, 5), (5, 9)]

    def send(c):
        for k, (a, b) in enumerate(chunks):  # two sequences interleaved, each over 3 requests
            for sid in (1, 2):
                c.async_stream_infer(name, [x_input(x[sid - 1:sid, a:b])], request_id=f"{sid}:{k}", sequence_id=sid,
                                     sequence_start=k == 0, sequence_end=k == len(chunks) - 1)
        c.async_stream_infer(name, [x_input(x[:1, :2])], request_id="ended", sequence_id=1)
        for sid in (3, 4, 5):  # max_sessions=2 open sequences per stream
            c.async_stream_infer(name, [x_input(x[:1, :2])], request_id=f"open{sid}", sequence_id=sid,
                                 sequence_start=True)
        return 2 * len(chunks) + 4

    got = stream(grpc_port, send)
    for n, (k, sid) in enumerate((k, sid) for k in range(len(chunks)) for sid in (1, 2)):
        result, error = got[n]
        assert error is None, error
        assert result.get_response().id == f"{sid}:{k}"
        close(result.as_numpy("y"), predictor.predict(x[sid - 1:sid, :chunks[k][1]]))  # = one pass over the prefix
    assert "sequence 1 is not open on this stream" in got[6][1].message()
    assert got[7][1] is None and got[8][1] is None
    assert "this stream has 2 open sequences" in got[9][1].message()
    # a new stream starts with none: the sequences were this stream's
    again = stream(grpc_port, lambda c: c.async_stream_infer(name, [x_input(x[:1, :2])], sequence_id=3) or 1)
    assert "sequence 3 is not open on this stream" in again[0][1].message()
