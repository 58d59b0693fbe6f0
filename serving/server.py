"""Run the app under uvicorn. SIGINT/SIGTERM stop accepting, let in-flight requests finish, then drain the queue."""
from __future__ import annotations

from lstm_onnx.serving.settings import ServeSettings


def serve(settings: ServeSettings, log_level: str = "info") -> None:
    import uvicorn

    from lstm_onnx.serving.app import create_app

    app = create_app(settings)
    # No route reads the client's address or scheme, so X-Forwarded-* handling would be a layer for nothing.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            timeout_graceful_shutdown=settings.graceful_timeout_s, access_log=False,
                            proxy_headers=False)
    uvicorn.Server(config).run()
