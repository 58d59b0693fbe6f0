"""Ray Serve's binding of v2 over gRPC (serving/protocols/v2_grpc.py's Service): the ingress methods that Ray's
gRPC proxy calls, and the servicer function it registers.

Ray's proxy (serve.start(grpc_options=...), serving/ray_app.py's grpc_options) decodes each request, picks the
application (the `application` metadata key; the only one when there is one) and calls the ingress method named
as the RPC with the request proto and a `grpc_context` (RayServegRPCContext); the bidi ModelStreamInfer gets a
gRPCInputStream instead and answers as an async generator. Each method hands the call to the Service over the
ingress's RayCore; an ApiError becomes the status set on grpc_context. One stream is one call into one ingress
replica for its whole life, so its sequences keep their h/c there (RayCore.for_stream). tritonclient is imported
lazily: serving on Ray over HTTP alone needs no tritonclient."""
from __future__ import annotations

import sys

from lstm_onnx.serving.inputs import ApiError

UNARY = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
         "ModelStatistics", "RepositoryIndex", "ModelInfer")  # protocols/v2_grpc.py's, which needs tritonclient


def add_servicer(servicer, server) -> None:
    """The servicer function Ray's gRPC proxy registers (serving/ray_app.py's GRPC_SERVICER): tritonclient's
    GRPCInferenceService, once its protos can be unpickled."""
    from tritonclient.grpc import service_pb2_grpc

    register_protos()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)


def register_protos() -> None:
    """tritonclient's messages name their module grpc_service_pb2 / model_config_pb2 (the .proto files' names),
    which no import finds, and Ray pickles each request from the proxy to the ingress (a stream's, one by one):
    under those names pickle finds tritonclient's modules. Called in the proxy (add_servicer) and the ingress."""
    try:
        from tritonclient.grpc import model_config_pb2, service_pb2
    except ImportError:  # no tritonclient: no gRPC, nothing to unpickle
        return
    for module, message in ((service_pb2, service_pb2.ModelInferRequest),
                            (model_config_pb2, model_config_pb2.ModelConfig)):
        sys.modules.setdefault(message.__module__, module)


def _set_status(grpc_context, exc: ApiError) -> None:
    from lstm_onnx.serving.protocols.v2_grpc import status_of

    code, details = status_of(exc)
    grpc_context.set_code(code)
    grpc_context.set_details(details)


def _unary(rpc: str):
    async def method(self, request, grpc_context):
        try:
            return await self.grpc_service().unary(rpc, request, grpc_context.invocation_metadata())
        except ApiError as exc:
            # Ray's proxy sends the code and details set here once the method returns an (empty) message
            _set_status(grpc_context, exc)
            from tritonclient.grpc import service_pb2

            return getattr(service_pb2, rpc + "Response")()

    method.__name__ = method.__qualname__ = rpc
    return method


class GrpcRoutes:
    """Mixed into the ingress deployment, which sets `core` (RayCore): one method per RPC, as Ray's proxy calls
    them."""

    core = None
    _service = None

    def grpc_service(self):
        if self._service is None:
            from lstm_onnx.serving.protocols.v2_grpc import Service

            register_protos()
            self._service = Service(self.core)
        return self._service

    async def ModelStreamInfer(self, requests, grpc_context):
        try:
            async for reply in self.grpc_service().stream(requests, grpc_context.invocation_metadata()):
                yield reply
        except ApiError as exc:  # only the token check: a request's error is its response's error_message
            # a stream's status is sent when it ends: Ray keeps the code set here when the method raises
            _set_status(grpc_context, exc)
            raise


for _rpc in UNARY:
    setattr(GrpcRoutes, _rpc, _unary(_rpc))
