"""Ray Serve: a FastAPI ingress serving the protocols (/v1, v2) in front of N model replicas (the Predictor).

    lstm-pipeline serve MODEL --engine ray --replicas 2          # or --max-replicas 4: autoscaling from --replicas
    serve run lstm_onnx.serving.ray_app:app_builder model=artifacts/model-serve.onnx replicas=2
    lstm-pipeline serve MODEL --engine ray --grpc-port 8001   # v2 over gRPC too, through Ray's gRPC proxy

Two deployments: `Ingress` mounts the same protocol modules as our server (serving/protocols/: /v1, v2 over HTTP)
over a Ray backend of the request core (RayCore), so it parses, checks and refuses each request as our server does,
then calls `Model`, whose replicas batch with @serve.batch (max_batch, max_wait_ms) and run Predictor.run_ragged.
Ray Serve routes each call to any replica, so a stream's h/c travels with the client as a signed token
(serving/state_token.py). A replica that dies mid-request turns into a 503 with Retry-After, never a wrong number.
With --grpc-port, Ray's gRPC proxy serves v2 over gRPC: the same protocol module (serving/protocols/v2_grpc.py)
through the ingress's gRPC methods (serving/ray_grpc.py).
Ray is imported only here, lazily: serving imports without it.
"""
from __future__ import annotations

import dataclasses
import secrets

from lstm_onnx.serving.settings import ServeSettings

# what Ray's gRPC proxy registers: the KServe v2 service, with the classes tritonclient ships (serving/ray_grpc.py)
GRPC_SERVICER = "lstm_onnx.serving.ray_grpc.add_servicer"


def scaling(settings: ServeSettings) -> dict:
    """Deployment options for the model: fixed `replicas`, or autoscaling from `replicas` to `max_replicas`."""
    if settings.max_replicas > settings.replicas:
        return {"autoscaling_config": {"min_replicas": settings.replicas, "max_replicas": settings.max_replicas,
                                       "initial_replicas": settings.replicas,
                                       "target_ongoing_requests": settings.target_ongoing}}
    return {"num_replicas": settings.replicas}


def build(settings: ServeSettings, key: bytes | None = None):
    """The Ray Serve application (Ingress bound to Model). `key`: the HMAC key of state tokens, one per
    deployment (random when None); every replica, restarted ones included, gets the same one."""
    from lstm_onnx.serving import ray_deployments

    key = key if key is not None else secrets.token_bytes(32)
    return ray_deployments.application(settings, key, scaling(settings))


def app_builder(args: dict):
    """`serve run lstm_onnx.serving.ray_app:app_builder model=... replicas=2 max_batch=32`: args are ServeSettings
    fields, as strings."""
    types = {f.name: type(f.default) for f in dataclasses.fields(ServeSettings) if f.default is not None}
    unknown = sorted(set(args) - set(types))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(types)}")
    if "grpc_port" in args:
        # Serve has started its proxies before `serve run` calls a builder; gRPC is one of their options
        raise ValueError("grpc_port cannot be set by an application builder: Ray's gRPC proxy is configured where "
                         f"Serve starts, e.g. `serve start --grpc-port N --grpc-servicer-functions {GRPC_SERVICER}` "
                         "before `serve run`, or grpc_options in a `serve run` / `serve deploy` config file")
    parsed = {k: (v.lower() in ("1", "true", "yes") if types[k] is bool else types[k](v)) for k, v in args.items()}
    return build(ServeSettings(**parsed))


def grpc_options(settings: ServeSettings) -> dict:
    """serve.start's grpc_options for settings.grpc_port ({} without gRPC): Ray's gRPC proxy serving
    inference.GRPCInferenceService, whose calls reach the ingress's methods (serving/ray_grpc.py)."""
    if not settings.grpc_port:
        return {}
    try:
        import tritonclient.grpc.service_pb2_grpc  # noqa: F401 - the proxy imports the servicer function
    except ImportError as exc:
        raise ValueError(f"--grpc-port needs tritonclient[grpc] ({exc.name} missing): pip install "
                         "'lstm-onnx-pipeline[triton]'") from None
    from ray.serve.config import gRPCOptions

    return {"grpc_options": gRPCOptions(port=settings.grpc_port, grpc_servicer_functions=[GRPC_SERVICER])}


def serve(settings: ServeSettings) -> None:
    """Start Ray (a local cluster, or the one RAY_ADDRESS names), run the app on settings.host:port, block until
    Ctrl-C, then shut Serve down."""
    import time

    import ray
    from ray import serve as ray_serve

    from lstm_onnx.serving.auth import exposure_warning

    grpc = grpc_options(settings)  # before Ray starts: a missing tritonclient needs no cluster
    ray.init(include_dashboard=False, ignore_reinit_error=True)
    ray_serve.start(http_options={"host": settings.host, "port": settings.port}, **grpc)
    ray_serve.run(build(settings), name="lstm", route_prefix="/")
    where = f" and gRPC on port {settings.grpc_port} (every interface)" if grpc else ""
    warning = exposure_warning("::", settings.auth_token) if grpc else None  # Ray's gRPC proxy binds [::]
    if warning:
        print(f"warning: gRPC: {warning}", flush=True)
    print(f"Ray Serve: http://{settings.host}:{settings.port}{where} ({scaling(settings)}); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()
        ray.shutdown()
