"""Ray Serve: a FastAPI ingress serving the protocols (/v1, v2) in front of N model replicas (the Predictor).

    lstm-pipeline serve MODEL --engine ray --replicas 2          # or --max-replicas 4: autoscaling from --replicas
    serve run lstm_onnx.serving.ray_app:app_builder model=artifacts/model-serve.onnx replicas=2

Two deployments: `Ingress` mounts the same protocol modules as our server (serving/protocols/: /v1, v2 over HTTP)
over a Ray backend of the request core (RayCore), so it parses, checks and refuses each request as our server does,
then calls `Model`, whose replicas batch with @serve.batch (max_batch, max_wait_ms) and run Predictor.run_ragged.
Ray Serve routes each call to any replica, so a stream's h/c travels with the client as a signed token
(serving/state_token.py). A replica that dies mid-request turns into a 503 with Retry-After, never a wrong number.
Ray is imported only here, lazily: serving imports without it.
"""
from __future__ import annotations

import dataclasses
import secrets

from lstm_onnx.serving.settings import ServeSettings


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
    parsed = {k: (v.lower() in ("1", "true", "yes") if types[k] is bool else types[k](v)) for k, v in args.items()}
    return build(ServeSettings(**parsed))


def serve(settings: ServeSettings) -> None:
    """Start Ray (a local cluster, or the one RAY_ADDRESS names), run the app on settings.host:port, block until
    Ctrl-C, then shut Serve down."""
    import time

    import ray
    from ray import serve as ray_serve

    ray.init(include_dashboard=False, ignore_reinit_error=True)
    ray_serve.start(http_options={"host": settings.host, "port": settings.port})
    ray_serve.run(build(settings), name="lstm", route_prefix="/")
    print(f"Ray Serve: http://{settings.host}:{settings.port} ({scaling(settings)}); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()
        ray.shutdown()
