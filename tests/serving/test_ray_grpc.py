"""v2 over gRPC on Ray without a cluster: the Ray binding (serving/ray_grpc.py) on a stand-in core (the bearer
check, the message limit, a method per RPC), and RayCore's stream-local sequences on a stand-in model handle.
The calls through Ray's proxy are in test_ray_serve.py."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("tritonclient.grpc.service_pb2", reason="needs tritonclient[grpc] (the triton extra)")

from lstm_onnx.serving.inputs import ApiError  # noqa: E402
from lstm_onnx.serving.ray_grpc import GrpcRoutes  # noqa: E402
from lstm_onnx.serving.request_core import RequestCore  # noqa: E402
from lstm_onnx.serving.settings import ServeSettings  # noqa: E402

TOKEN = "t0ken-for-the-grpc-guard-test-0123"
FACTS = {"num_features": 3, "stateful": True, "head": "last", "num_states": 1, "hidden_size": 2, "safe_abs": None}


class Context:
    """The part of Ray's RayServegRPCContext the binding uses."""

    def __init__(self, metadata=()):
        self.metadata, self.code, self.details = list(metadata), None, ""

    def invocation_metadata(self):
        return self.metadata

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


class Core(RequestCore):
    name = "m"

    def __init__(self, **settings):
        self.settings, self.memo, self._facts = ServeSettings(**settings), {}, FACTS

    async def facts(self):
        return self._facts

    async def run(self, xs):
        return [{"y": np.zeros(1, np.float32)} for _ in xs]

    async def not_ready(self):
        return None


class Ingress(GrpcRoutes):
    def __init__(self, **settings):
        self.core = Core(**settings)


def infer_request(steps: int = 2) -> pb.ModelInferRequest:
    x = np.ones((1, steps, 3), np.float32)
    return pb.ModelInferRequest(model_name="m", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=list(x.shape))], raw_input_contents=[x.tobytes()])


def test_the_binding_has_a_method_per_rpc_of_the_protocol():
    from lstm_onnx.serving import ray_grpc
    from lstm_onnx.serving.protocols import v2_grpc

    assert ray_grpc.UNARY == v2_grpc.UNARY
    assert all(callable(getattr(Ingress, rpc)) for rpc in (*ray_grpc.UNARY, "ModelStreamInfer"))


def test_a_token_guards_every_call_but_the_probes():
    ingress = Ingress(auth_token=TOKEN)
    ctx = Context()
    assert asyncio.run(ingress.ServerLive(pb.ServerLiveRequest(), ctx)).live and ctx.code is None
    assert asyncio.run(ingress.ServerReady(pb.ServerReadyRequest(), ctx)).ready and ctx.code is None
    reply = asyncio.run(ingress.ModelInfer(infer_request(), ctx))
    assert ctx.code == grpc.StatusCode.UNAUTHENTICATED and "missing or wrong bearer token" in ctx.details
    assert reply == pb.ModelInferResponse()
    ctx = Context([("authorization", f"Bearer {TOKEN}x")])
    asyncio.run(ingress.ModelMetadata(pb.ModelMetadataRequest(name="m"), ctx))
    assert ctx.code == grpc.StatusCode.UNAUTHENTICATED
    ctx = Context([("authorization", f"Bearer {TOKEN}")])
    assert list(asyncio.run(ingress.ModelInfer(infer_request(), ctx)).outputs[0].shape) == [1, 1]
    assert ctx.code is None


def test_a_stream_without_the_token_ends_unauthenticated():
    async def drain(ctx):
        async def requests():
            yield infer_request()
        return [r async for r in Ingress(auth_token=TOKEN).ModelStreamInfer(requests(), ctx)]

    ctx = Context()
    with pytest.raises(ApiError, match="missing or wrong bearer token"):
        asyncio.run(drain(ctx))
    assert ctx.code == grpc.StatusCode.UNAUTHENTICATED
    ctx = Context([("authorization", f"Bearer {TOKEN}")])
    replies = asyncio.run(drain(ctx))
    assert len(replies) == 1 and not replies[0].error_message and ctx.code is None


def test_a_message_over_the_body_limit_is_refused_before_parsing():
    ctx = Context()
    asyncio.run(Ingress(max_body_bytes=64).ModelInfer(infer_request(steps=8), ctx))
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and "more than the limit 64" in ctx.details
    ctx = Context()
    asyncio.run(Ingress(max_body_bytes=4096).ModelInfer(infer_request(steps=8), ctx))
    assert ctx.code is None


class Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, arg=None):
        async def call():
            return self.fn(arg)
        return call()


class Model:
    """A stand-in for the Model deployment's handle: y is the running sum of x, h carries it."""

    info = Remote(lambda _: FACTS)

    def __init__(self):
        self.run = Remote(self.step)

    @staticmethod
    def step(item):
        x, state = item
        h = (state[0] if state is not None else np.zeros((1, 2), np.float32)) + x.sum()
        return {"y": h[0, :1].copy(), "hn": h, "cn": h, "replica": "r"}


def test_sequences_live_on_a_streams_core_and_unary_ones_are_refused():
    pytest.importorskip("ray")
    from lstm_onnx.serving.ray_deployments import NO_AFFINITY, RayCore

    core = RayCore(Model(), ServeSettings(max_sessions=2), b"k" * 32)
    x = np.ones((3, 3), np.float32)

    async def steps():
        with pytest.raises(ApiError) as refused:
            await core.sequence_step(("v2/int/1", True, False), [x])
        assert refused.value is NO_AFFINITY
        stream, other = core.for_stream(), core.for_stream()
        ys = [(await stream.sequence_step(("v2/int/1", k == 0, k == 2), [x]))[0]["y"][0] for k in range(3)]
        assert ys == [9, 18, 27]  # h carried from step to step
        with pytest.raises(ApiError, match="sequence 1 is not open on this stream"):  # ended
            await stream.sequence_step(("v2/int/1", False, False), [x])
        await stream.sequence_step(("v2/int/1", True, False), [x])
        await stream.sequence_step(("v2/int/2", True, False), [x])
        with pytest.raises(ApiError, match="this stream has 2 open sequences"):
            await stream.sequence_step(("v2/int/3", True, False), [x])
        with pytest.raises(ApiError, match="sequence 2 is not open on this stream"):  # each stream has its own
            await other.sequence_step(("v2/int/2", False, False), [x])
        assert core.sequences is None

    asyncio.run(steps())
