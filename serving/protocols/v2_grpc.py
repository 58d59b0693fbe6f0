"""The Open Inference Protocol over gRPC (KServe v2's inference.GRPCInferenceService, with the service classes
tritonclient ships): one module, two bindings. `Service` is the protocol: each RPC takes a request proto and gives
a response proto or raises ApiError, over the request core and v2 model operations (serving/protocols/v2_rest.py:
check_model, execute, metadata), so the range check, batcher, sequences and statistics are those of /v1 and v2
HTTP; the bearer token comes from the `authorization` metadata (ServerLive/Ready open, as the HTTP probes). A
binding only calls it and turns an ApiError into its transport's status (status_of): `Servicer` here for
grpc.aio, which the local server starts (serve --grpc-port), and serving/ray_grpc.py for Ray Serve's gRPC
proxy. Not in the HTTP registry (serving/protocols/__init__.py): it is its own listener.

Tensors: x as FP32 [batch, steps, features] (raw_input_contents or fp32_contents), lengths as INT32 [batch]
optional, y back in raw_output_contents. Sequences (parameters sequence_id / sequence_start / sequence_end) go
over ModelInfer or ModelStreamInfer through the core's sequence_step (a stream's: RequestCore.for_stream); a
stream carries any number of sequences, interleaved, and an error in one request is that response's
error_message, not the end of the stream."""
from __future__ import annotations

import math

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from lstm_onnx.serving.auth import UNAUTHORIZED, BearerCheck
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.v2_protocol import (
    DTYPES,
    INPUTS,
    OUTPUTS,
    UNSUPPORTED,
    InferRequest,
    bad,
    check_lengths,
    check_shape,
    checked,
    error_body,
    finite_max,
    sequence_of,
)
from lstm_onnx.serving.protocols import v2_rest
from lstm_onnx.serving.protocols.v2_rest import PLATFORM, VERSION

# HTTP status of an ApiError -> gRPC status, as Triton maps its errors
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
         413: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
         429: grpc.StatusCode.RESOURCE_EXHAUSTED,
         501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE}


def peer_host(peer: str) -> str:
    """grpc's peer ("ipv4:10.0.0.1:5000", "ipv6:[::1]:5000") -> its address, the session quota's key."""
    return peer.rpartition(":")[0].partition(":")[2].strip("[]")  # "::1", as HTTP's scope gives it


CONTENTS = {"FP32": "fp32_contents", "INT32": "int_contents"}


def parse_request(request: pb.ModelInferRequest, num_features: int, max_items: int, max_steps: int) -> InferRequest:
    """A ModelInferRequest -> the InferRequest the HTTP transport parses to, or the ApiError saying why not."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise bad(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs", "one per input, in order")
    tensors, largest = {}, None
    for k, tensor in enumerate(request.inputs):
        name, want = tensor.name, INPUTS.get(tensor.name)
        if want is None:
            raise bad(f"unknown input {name!r}", f"inputs named {', '.join(INPUTS)}")
        if name in tensors:
            raise bad(f"input {name!r} is given twice")
        if tensor.datatype != want:
            raise bad(f"input {name!r} has datatype {tensor.datatype!r}", want)
        if any(p in tensor.parameters for p in UNSUPPORTED):
            raise bad(f"input {name!r} asks for shared memory, which this server does not offer", "data in the request")
        shape = check_shape(list(tensor.shape), name, num_features, max_items, max_steps)
        count = math.prod(shape)
        if raw:
            if len(raw[k]) != count * DTYPES[want].itemsize:
                raise bad(f"input {name!r} has {len(raw[k])} raw bytes; shape {list(shape)} of {want} is "
                          f"{count * DTYPES[want].itemsize}")
            values = np.frombuffer(raw[k], DTYPES[want])
            if want == "FP32":  # float32 already: checked in one pass that the range check reuses
                largest = finite_max(values, name)  # x is the one FP32 input
                tensors[name] = values.reshape(shape)
                continue
        else:
            values = np.asarray(getattr(tensor.contents, CONTENTS[want]), DTYPES[want])
            if values.size != count:
                raise bad(f"input {name!r} has {values.size} values; shape {list(shape)} needs {count}")
        tensors[name] = checked(values, want, name).reshape(shape)
    if "x" not in tensors:
        raise bad('missing input "x"', "FP32 x shaped [batch, steps, features]")
    check_lengths(tensors["x"], tensors.get("lengths"))
    for out in request.outputs:
        if out.name not in OUTPUTS:
            raise bad(f"unknown output {out.name!r}", f"outputs named {', '.join(OUTPUTS)}")
    params = {key: _value(p) for key, p in request.parameters.items()}
    return InferRequest(request.id or None, tensors["x"], tensors.get("lengths"), {"y": True}, sequence_of(params),
                        largest)


def _value(param: pb.InferParameter):
    which = param.WhichOneof("parameter_choice")
    return None if which is None else getattr(param, which)


def response(model: str, rid: str | None, y: np.ndarray) -> pb.ModelInferResponse:
    y = np.ascontiguousarray(y, DTYPES[OUTPUTS["y"]])
    return pb.ModelInferResponse(model_name=model, model_version=VERSION, id=rid or "",
                                 outputs=[pb.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32",
                                                                                  shape=list(y.shape))],
                                 raw_output_contents=[y.tobytes()])


def message(exc: ApiError) -> str:
    return error_body(exc)["error"]


def status_of(exc: ApiError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status (code, details) of an ApiError, on every binding."""
    return CODES.get(exc.status, grpc.StatusCode.INTERNAL), message(exc)


# the RPCs whose bearer rule is a probe's (serving/auth.py's OPEN_PATHS): open, as orchestrators call them
PROBES = {"ServerLive": "/v2/health/live", "ServerReady": "/v2/health/ready"}
UNARY = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
         "ModelStatistics", "RepositoryIndex", "ModelInfer")


def check_token(auth: BearerCheck | None, rpc: str, metadata) -> None:
    """UNAUTHORIZED unless `rpc` is a probe or the call's metadata ((key, value) pairs) carries
    `authorization: Bearer <token>`."""
    if auth is None:
        return
    headers = [(k.lower().encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
               for k, v in metadata or ()]
    if not auth.allows({"path": PROBES.get(rpc, ""), "headers": headers}):
        raise UNAUTHORIZED


async def infer(core, request: pb.ModelInferRequest, client: str = "") -> pb.ModelInferResponse:
    s = core.settings
    # the HTTP body limit; a binding's transport may hold the message to it already (grpc.aio does)
    if request.ByteSize() > s.max_body_bytes:
        raise ApiError(413, "body_too_large", f"the message is {request.ByteSize()} bytes, more than the limit "
                       f"{s.max_body_bytes}", f"at most {s.max_body_bytes} bytes")
    v2_rest.check_model(core, request.model_name, request.model_version)
    facts = await core.facts()
    # no parse process here: grpc has decoded the message already, and raw contents are one frombuffer
    req = parse_request(request, facts["num_features"], s.max_items, s.max_seq_len)
    y, _ = await v2_rest.execute(core, req, client)
    return response(core.name, req.id, y)


class Service:
    """The service's RPCs over the request core, transport-neutral: `unary(rpc, request, metadata)` gives the
    response proto or raises ApiError (the token check included); `stream` answers ModelStreamInfer. A binding
    (Servicer below; Ray's proxy: serving/ray_grpc.py) turns an ApiError into its transport's status."""

    def __init__(self, core):
        self.core = core
        token = core.settings.auth_token
        self.auth = BearerCheck(token) if token is not None else None

    async def unary(self, rpc: str, request, metadata, client: str = ""):
        """`client`: the caller's address, whose session quota a sequence it starts counts against."""
        check_token(self.auth, rpc, metadata)
        if rpc == "ModelInfer":
            return await infer(self.core, request, client)
        return await getattr(self, rpc)(request)

    async def stream(self, requests, metadata, client: str = ""):
        """Each request's ModelStreamInferResponse, in order; a failed request is its response's
        error_message and the stream goes on. Sequences go through the core's stream core (for_stream)."""
        check_token(self.auth, "ModelStreamInfer", metadata)
        core = self.core.for_stream()
        async for request in requests:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await infer(core, request, client))
            except ApiError as exc:
                yield pb.ModelStreamInferResponse(error_message=message(exc),
                                                  infer_response=pb.ModelInferResponse(id=request.id))

    async def ModelInfer(self, request):
        return await infer(self.core, request)

    async def ServerLive(self, request):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request):
        return pb.ServerReadyResponse(ready=await self.core.not_ready() is None)

    async def ModelReady(self, request):
        known = request.name == self.core.name and request.version in ("", VERSION)
        return pb.ModelReadyResponse(ready=known and await self.core.not_ready() is None)

    async def ServerMetadata(self, request):
        return pb.ServerMetadataResponse(**await v2_rest.server_metadata(self.core))

    async def ModelMetadata(self, request):
        v2_rest.check_model(self.core, request.name, request.version)
        meta = await v2_rest.metadata(self.core)
        tensors = lambda entries: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in entries]  # noqa: E731
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=PLATFORM,
                                        inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

    async def ModelConfig(self, request):
        config = await v2_rest.model_config(self.core, name=request.name, version=request.version)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    async def ModelStatistics(self, request):
        stats = await v2_rest.model_stats(self.core, name=request.name, version=request.version)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request):
        models = [pb.RepositoryIndexResponse.ModelIndex(**m) for m in await v2_rest.repository_index(self.core)]
        return pb.RepositoryIndexResponse(models=models)


def _unary(rpc: str):
    async def method(self, request, context):
        try:
            metadata, client = context.invocation_metadata(), peer_host(context.peer())
            return await self.service.unary(rpc, request, metadata, client)
        except ApiError as exc:
            await context.abort(*status_of(exc))

    method.__name__ = method.__qualname__ = rpc
    return method


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """grpc.aio's binding of Service, for the local server: an ApiError aborts the call with its status."""

    def __init__(self, core):
        self.service = Service(core)

    async def ModelStreamInfer(self, request_iterator, context):
        try:
            metadata, client = context.invocation_metadata(), peer_host(context.peer())
            async for reply in self.service.stream(request_iterator, metadata, client):
                yield reply
        except ApiError as exc:  # only the token check: a request's error is its response's error_message
            await context.abort(*status_of(exc))


for _rpc in UNARY:
    setattr(Servicer, _rpc, _unary(_rpc))


async def start(core, host: str, port: int, max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """The gRPC server on host:port (0: any free port), started on the running event loop; (server, port)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(core), server)
    bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if not bound:
        raise ValueError(f"cannot listen on {host}:{port} for gRPC")
    await server.start()
    return server, bound
