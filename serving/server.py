"""Run the app under uvicorn. SIGINT/SIGTERM stop accepting, let in-flight requests finish, then drain the queue;
a request still sending its body is answered 503 at once (serving/protocol.py)."""
from __future__ import annotations

import gc
import logging
import socket

from lstm_onnx.serving.settings import ServeSettings


def config_for(settings: ServeSettings, app, log_level: str = "info"):
    """The uvicorn config the server runs with: our limited httptools protocol, no websockets."""
    import uvicorn

    from lstm_onnx.serving.protocol import protocol_for
    from lstm_onnx.serving.wire import coalescing

    # X-Forwarded-For is not trusted: the session quota's client is the peer address, which a client cannot forge.
    srv = getattr(getattr(app, "state", None), "server", None)
    http = protocol_for(settings, srv.metrics.rejected.inc if srv is not None else None)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                          timeout_graceful_shutdown=settings.graceful_timeout_s, access_log=False,
                          proxy_headers=False, http=coalescing(http), ws="none")


def serve(settings: ServeSettings, log_level: str = "info") -> None:
    if settings.engine == "ray":
        from lstm_onnx.serving.ray_app import serve as serve_on_ray

        if settings.grpc_port:  # Ray's proxy binds [::]:port in its actor, where a port in use is only a log line
            listen("0.0.0.0", settings.grpc_port).close()

        return serve_on_ray(settings)
    import uvicorn

    from lstm_onnx.serving.app import create_app
    from lstm_onnx.serving.auth import exposure_warning

    sock = listen(settings.host, settings.port)  # before the model loads: a bad address needs no model
    if settings.grpc_port:  # grpc binds its own socket at start-up; a port in use would fail there, in uvicorn's log
        listen(settings.host, settings.grpc_port).close()
    config = config_for(settings, create_app(settings), log_level)  # configures logging
    warning = exposure_warning(settings.host, settings.auth_token)
    if warning:
        logging.getLogger("uvicorn.error").warning(warning)
    # What is loaded by now (model, modules, app) lives as long as the process: frozen, the collector's full
    # passes no longer walk its ~60k objects (12 ms a pass) in the middle of requests.
    gc.freeze()
    uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or ValueError in one line. Binding here, not in uvicorn, keeps a bad address
    or a port in use from ending in uvicorn's own log line and exit status."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:  # socket.gaierror: not an address or a name this machine resolves
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
