"""The Open Inference Protocol over gRPC (serve --grpc-port), driven by Triton's own client (tritonclient.grpc):
every call of the service, answers equal to Predictor, sequences interleaved over one stream and over many,
bad messages as a gRPC status with a reason."""
from __future__ import annotations

import contextlib
import queue
import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.settings import ServeSettings
from lstm_onnx.serving.tritonserver import free_port
from tests import models
from tests.harness import record
from tests.serving.harness_tools import Live

grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the triton extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOL = default_tolerance("float32")
NAME = "lstm"


def close(a, b):
    np.testing.assert_allclose(a, b, atol=TOL.atol, rtol=TOL.rtol)



@pytest.fixture(scope="module")
def client(grpc_live):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_live.settings.grpc_port}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def predictor(serve_model):
    return Predictor.load(serve_model)


def x_input(x: np.ndarray):
    return grpcclient.InferInput("x", list(x.shape), "FP32").set_data_from_numpy(x)


def test_health_metadata_config_statistics_index(client, predictor):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    assert not client.is_model_ready("other")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "lstm-onnx-pipeline" and "sequence" in server["extensions"]
    meta = client.get_model_metadata(NAME, as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert meta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": ["-1", "-1", str(predictor.num_features)]}
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'other' is not found") as err:
        client.get_model_metadata("other")
    assert err.value.status() == "StatusCode.NOT_FOUND"
    config = client.get_model_config(NAME, as_json=True)["config"]
    assert config["name"] == NAME and config["sequence_batching"]["state"][1]["output_name"] == "cn"
    stats = client.get_inference_statistics(NAME, as_json=True)["model_stats"]
    assert len(stats) == 1 and stats[0]["name"] == NAME
    assert client.get_model_repository_index(as_json=True)["models"] == [{"name": NAME, "version": "1",
                                                                         "state": "READY"}]


def test_infer_equals_predictor_with_raw_and_typed_contents(grpc_live, client, predictor):
    x = np.stack(models.raw_inputs(np.random.default_rng(1), [7, 7, 7]))
    close(client.infer(NAME, [x_input(x)]).as_numpy("y"), predictor.predict(x))
    # typed contents (fp32_contents), as other clients send them
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    import grpc

    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(f"127.0.0.1:{grpc_live.settings.grpc_port}") as channel:
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=NAME, id="typed", inputs=[tensor]))
    assert reply.id == "typed" and list(reply.outputs[0].shape) == [3, models.O]
    close(np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(3, models.O), predictor.predict(x))


def test_lengths(client, predictor):
    x = np.stack(models.raw_inputs(np.random.default_rng(2), [9, 9]))
    lengths = np.array([9, 4], np.int32)
    inputs = [x_input(x), grpcclient.InferInput("lengths", [2], "INT32").set_data_from_numpy(lengths)]
    close(client.infer(NAME, inputs).as_numpy("y"), predictor.predict(x, lengths))


def chunks(x: np.ndarray, sizes: list[int]):
    edges = np.cumsum([0] + sizes)
    return [x[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


def test_sequences_over_model_infer_equal_one_pass(client, predictor):
    x = np.stack(models.raw_inputs(np.random.default_rng(3), [12]))
    parts = chunks(x, [5, 1, 6])
    for k, part in enumerate(parts):
        y = client.infer(NAME, [x_input(part)], sequence_id=77, sequence_start=k == 0,
                         sequence_end=k == len(parts) - 1).as_numpy("y")
    close(y, predictor.predict(x))


@pytest.mark.parametrize("streams", [1, 3])
def test_interleaved_sequences_over_streams_equal_one_pass_over_each_prefix(grpc_live, predictor, streams):
    """Three sequences (int and string ids), chunked differently, interleaved on one stream or spread over
    several: each response equals one pass over that sequence's prefix."""
    rng = np.random.default_rng(4)
    seqs = {1001: [3, 4, 2], "s-a": [1, 1, 5, 2], 1003: [6, 3]}
    xs = {sid: np.stack(models.raw_inputs(rng, [sum(sizes)])) for sid, sizes in seqs.items()}
    clients, results = [], [queue.Queue() for _ in range(streams)]
    for k in range(streams):
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_live.settings.grpc_port}")
        c.start_stream(callback=lambda result, error, q=results[k]: q.put((result, error)))
        clients.append(c)
    sent = []  # (sid, prefix steps); a sequence keeps to one stream, where its requests stay in order
    for step in range(max(map(len, seqs.values()))):
        for n, (sid, sizes) in enumerate(seqs.items()):
            if step < len(sizes):
                done = sum(sizes[:step])
                part = xs[sid][:, done:done + sizes[step]]
                clients[n % streams].async_stream_infer(NAME, [x_input(part)], request_id=f"{sid}:{step}",
                                                        sequence_id=sid, sequence_start=step == 0,
                                                        sequence_end=step == len(sizes) - 1)
                sent.append((sid, done + sizes[step]))
    got = {}
    for k in range(streams):
        clients[k].stop_stream()
        while not results[k].empty():
            result, error = results[k].get()
            assert error is None, error
            got[result.get_response().id] = result.as_numpy("y")
        clients[k].close()
    assert len(got) == len(sent) == 9
    counters = {sid: 0 for sid in seqs}
    for sid, prefix in sent:
        close(got[f"{sid}:{counters[sid]}"], predictor.predict(xs[sid][:, :prefix]))
        counters[sid] += 1


BAD = {
    "wrong datatype": lambda x: [grpcclient.InferInput("x", list(x.shape), "FP64").set_data_from_numpy(
        x.astype(np.float64))],
    "wrong features": lambda x: [x_input(x[:, :, :2].copy())],
    "unknown input": lambda x: [grpcclient.InferInput("h0", list(x.shape), "FP32").set_data_from_numpy(x)],
    "NaN": lambda x: [x_input(np.full_like(x, np.nan))],
    "lengths past x": lambda x: [x_input(x), grpcclient.InferInput("lengths", [1], "INT32").set_data_from_numpy(
        np.array([99], np.int32))],
}


@pytest.mark.harness
@pytest.mark.parametrize("case", BAD)
def test_bad_messages_get_a_status_with_a_reason(client, case):
    x = np.stack(models.raw_inputs(np.random.default_rng(5), [4]))
    try:
        client.infer(NAME, BAD[case](x))
        status, text = "OK", ""
    except InferenceServerException as exc:
        status, text = exc.status(), exc.message()
    clean = status == "StatusCode.INVALID_ARGUMENT" and bool(text)
    record("grpc", clean, f"{case}: {status} {text[:100]}")
    assert clean, (status, text)


@pytest.mark.harness
def test_a_bad_request_on_a_stream_is_its_error_and_the_stream_goes_on(grpc_live, predictor):
    q = queue.Queue()
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_live.settings.grpc_port}")
    c.start_stream(callback=lambda result, error: q.put((result, error)))
    x = np.stack(models.raw_inputs(np.random.default_rng(6), [4]))
    c.async_stream_infer(NAME, [x_input(x)], request_id="a", sequence_id=4242)  # never started
    c.async_stream_infer(NAME, [x_input(x)], request_id="b")
    c.stop_stream()
    (_, error), (result, ok) = q.get(timeout=10), q.get(timeout=10)
    c.close()
    record("grpc", error is not None and "not open" in error.message(), f"stream error: {error}")
    assert error is not None and "sequence 4242 is not open" in error.message()
    assert ok is None and result.get_response().id == "b"
    close(result.as_numpy("y"), predictor.predict(x))


TOKEN = "t0ken-for-the-grpc-bearer-test-0123"


@pytest.fixture(scope="module")
def guarded(serve_model):
    settings = ServeSettings(model=str(serve_model), model_name=NAME, grpc_port=free_port(), max_wait_ms=5.0,
                             auth_token=TOKEN)
    with Live(settings) as server:
        yield server


def test_a_token_guards_every_call_but_the_probes(guarded, predictor):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{guarded.settings.grpc_port}")
    x = np.stack(models.raw_inputs(np.random.default_rng(7), [4]))
    assert c.is_server_live() and c.is_server_ready()  # open, as the HTTP probes are
    for headers in (None, {"authorization": f"Bearer {TOKEN}x"}, {"authorization": TOKEN}):
        with pytest.raises(InferenceServerException, match="missing or wrong bearer token") as err:
            c.infer(NAME, [x_input(x)], headers=headers)
        assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException, match="missing or wrong bearer token"):
        c.get_model_metadata(NAME)
    close(c.infer(NAME, [x_input(x)], headers={"authorization": f"Bearer {TOKEN}"}).as_numpy("y"),
          predictor.predict(x))
    q = queue.Queue()  # a stream without the token ends with the status, having answered nothing
    c.start_stream(callback=lambda result, error: q.put((result, error)))
    with contextlib.suppress(InferenceServerException):  # raised here when the refusal came first
        c.async_stream_infer(NAME, [x_input(x)])
    result, error = q.get(timeout=10)
    assert result is None and "missing or wrong bearer token" in str(error)
    c.close()


def test_a_grpc_sequence_counts_against_its_peer_s_session_quota(grpc_live, client):
    from lstm_onnx.serving.protocols.v2_grpc import peer_host

    assert [peer_host(p) for p in ("ipv4:10.0.0.1:5000", "ipv6:[::1]:5000")] == ["10.0.0.1", "::1"]
    x = np.zeros((1, 2, 3), np.float32)
    client.infer(NAME, [x_input(x)], sequence_id=9191, sequence_start=True)
    sessions = grpc_live.server.config.app.state.server.sessions
    assert sessions.sessions["v2/int/9191"].client == "127.0.0.1"
    client.infer(NAME, [x_input(x)], sequence_id=9191, sequence_end=True)
    assert "v2/int/9191" not in sessions.sessions
