"""The Open Inference Protocol over gRPC (KServe v2's inference.GRPCInferenceService, with the service classes
tritonclient ships), beside the HTTP routes on the same event loop: requests go through the same V2.execute,
so the range check, batcher, sequences and statistics are those of /v1 and v2 HTTP.

Tensors: x as FP32 [batch, steps, features] (raw_input_contents or fp32_contents), lengths as INT32 [batch]
optional, y back in raw_output_contents. Sequences (parameters sequence_id / sequence_start / sequence_end) go
over ModelInfer or ModelStreamInfer; a stream carries any number of sequences, interleaved, and an error in
one request is that response's error_message, not the end of the stream."""
from __future__ import annotations

import math

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

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
from lstm_onnx.serving.v2_routes import PLATFORM, VERSION

# HTTP status of an ApiError -> gRPC status, as Triton maps its errors
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
         409: grpc.StatusCode.FAILED_PRECONDITION, 413: grpc.StatusCode.INVALID_ARGUMENT,
         422: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE}
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


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Every call answers from the same V2 object as the HTTP routes; errors are a gRPC status with the line
    the HTTP transport would send."""

    def __init__(self, v2):
        self.v2, self.srv = v2, v2.srv

    async def _abort(self, context, exc: ApiError):
        await context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), message(exc))

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        s = self.srv.settings
        self.v2.check_model(request.model_name, request.model_version)
        # no parse process here: grpc has decoded the message already, and raw contents are one frombuffer
        req = parse_request(request, self.srv.predictor.num_features, s.max_items, s.max_seq_len)
        return response(self.v2.name, req.id, await self.v2.execute(req))

    async def ModelInfer(self, request, context):
        try:
            return await self.infer(request)
        except ApiError as exc:
            await self._abort(context, exc)

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self.infer(request))
            except ApiError as exc:
                yield pb.ModelStreamInferResponse(error_message=message(exc),
                                                  infer_response=pb.ModelInferResponse(id=request.id))

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.srv.batcher.running)

    async def ModelReady(self, request, context):
        known = request.name == self.v2.name and request.version in ("", VERSION)
        return pb.ModelReadyResponse(ready=known and self.srv.batcher.running)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(**await self.v2.server_metadata())

    async def ModelMetadata(self, request, context):
        try:
            self.v2.check_model(request.name, request.version)
        except ApiError as exc:
            await self._abort(context, exc)
        meta = self.v2.metadata()
        tensors = lambda entries: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in entries]  # noqa: E731
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=PLATFORM,
                                        inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

    async def ModelConfig(self, request, context):
        try:
            config = await self.v2.model_config(request.name, request.version)
        except ApiError as exc:
            await self._abort(context, exc)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    async def ModelStatistics(self, request, context):
        try:
            stats = await self.v2.model_stats(request.name, request.version)
        except ApiError as exc:
            await self._abort(context, exc)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request, context):
        models = [pb.RepositoryIndexResponse.ModelIndex(**m) for m in await self.v2.repository_index()]
        return pb.RepositoryIndexResponse(models=models)


async def start(v2, host: str, port: int, max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """The gRPC server on host:port (0: any free port), started on the running event loop; (server, port)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(v2), server)
    bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if not bound:
        raise ValueError(f"cannot listen on {host}:{port} for gRPC")
    await server.start()
    return server, bound
