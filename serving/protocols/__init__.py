"""The protocol layer: one module per protocol (its routes, decode/encode and error shape) and this registry,
which both servers mount: the uvicorn app (serving/app.py) and Ray Serve's ingress (serving/ray_deployments.py).

Adding a protocol over HTTP takes two places: its module (a `Protocol` with its routes, handlers over the request
core, and error shape; serving/protocols/base.py) and its line in PROTOCOLS. v2 over gRPC is its own listener
(serving/protocols/v2_grpc.py), started by the local server and bound to Ray Serve's gRPC proxy."""
from __future__ import annotations

from functools import lru_cache

from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocols import v1, v2_rest
from lstm_onnx.serving.protocols.base import Router

PROTOCOLS = (
    v1.PROTOCOL,
    v2_rest.PROTOCOL,
)


def router(extensions=()) -> Router:
    """A router over the registered protocols' routes that `extensions` (the core's) allow."""
    return Router(PROTOCOLS, extensions)


def error_body(exc: ApiError, path: str) -> dict:
    """`exc` in the error shape of the protocol that owns `path`, for answers given before any app runs."""
    return _shapes(PROTOCOLS).error_body(exc, path)


@lru_cache(maxsize=4)
def _shapes(registered: tuple) -> Router:
    return Router(registered)
