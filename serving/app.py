"""The FastAPI app: predict (batched), streaming sessions, model info, health and Prometheus metrics."""
from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstm_onnx.serving.batcher import Batcher, Item, QueueFull
from lstm_onnx.serving.bodies import predict_arrays, step_array
from lstm_onnx.serving.hotpath import PREDICT, STEP, HotRoutes, route_of
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.metrics import Metrics
from lstm_onnx.serving.sessions import SessionLimit, SessionStore, UnknownSession
from lstm_onnx.serving.settings import ServeSettings

RETRY_AFTER_S = "1"


class Server:
    """What the routes share: settings, predictor, batcher, sessions, metrics."""

    def __init__(self, settings: ServeSettings, predictor):
        self.settings, self.predictor = settings, predictor
        self.batcher = Batcher(predictor, settings.max_batch, settings.max_wait_ms, settings.max_queue,
                               settings.workers, on_batch=lambda n: self.metrics.batch_size.observe(n))
        self.sessions = (SessionStore(predictor.num_states, predictor.hidden_size, settings.session_ttl_s,
                                      settings.max_sessions) if predictor.stateful else None)
        self.metrics = Metrics(lambda: self.batcher.depth, lambda: len(self.sessions or ()))

    async def run(self, items: list[Item]) -> list[dict]:
        try:
            return await self.batcher.submit(items)
        except QueueFull as exc:
            self.metrics.rejected.inc(reason="queue_full")
            raise ApiError(503, "overloaded", str(exc), "retry after the Retry-After header's seconds",
                           {"Retry-After": RETRY_AFTER_S}) from None

    def session(self, sid: str):
        if self.sessions is None:
            raise ApiError(409, "not_stateful", "this model has no h0/c0 inputs, so it cannot stream",
                           "a model exported with --stateful")
        try:
            return self.sessions.get(sid)
        except UnknownSession:
            raise ApiError(404, "unknown_session", f"no session {sid!r} (never created, deleted or expired "
                           f"after {self.settings.session_ttl_s:g} s idle)", "an id from POST /v1/sessions") from None

    def model_info(self) -> dict:
        p, s = self.predictor, self.settings
        meta = p.meta
        io = lambda vs: [{"name": v.name, "shape": v.shape, "type": v.type} for v in vs]  # noqa: E731
        return {"path": s.model, "form": meta.get("form"), "version": meta.get("version"),
                "opset": meta.get("opset"), "head": p.head, "num_features": p.num_features,
                "feature_names": meta.get("feature_names"), "target_names": meta.get("target_names"),
                "stateful": p.stateful, "lengths_input": p.has_lengths,
                "batching": "padded with sequence_lens" if p.has_lengths else "grouped by length",
                "inputs": io(p.session.get_inputs()), "outputs": io(p.session.get_outputs()),
                "io": meta.get("io"), "providers": p.session.get_providers(),
                "limits": {k: getattr(s, k) for k in ("max_batch", "max_wait_ms", "max_queue", "max_items",
                                                         "max_seq_len", "max_body_bytes", "session_ttl_s",
                                                         "max_sessions", "workers")}}


class ServingApp(FastAPI):
    """FastAPI, with the hot routes (pipeline.serving.hotpath) answered before its middleware stack."""

    hot: HotRoutes | None = None

    async def __call__(self, scope, receive, send):
        found = route_of(scope["path"]) if scope["type"] == "http" and self.hot is not None else None
        if found is not None:
            return await self.hot(scope, receive, send, *found)
        return await super().__call__(scope, receive, send)


class MetricsMiddleware:
    """Counts and times the FastAPI routes (the hot routes count themselves). Pure ASGI: @app.middleware("http")
    wraps each request in extra tasks and streams, a per-request cost that shows at a few thousand requests
    per second."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = self.metrics.started(), [500]

        async def send_and_see(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            route = scope.get("route")
            self.metrics.finished(start, route.path if route is not None else "other", scope["method"], status[0])


def create_app(settings: ServeSettings, predictor=None) -> FastAPI:
    """`predictor`: a loaded runtimes.embed.Predictor (loaded from settings.model when None)."""
    if predictor is None:
        from lstm_onnx.runtimes.embed import Predictor

        predictor = Predictor.load(settings.model, settings.provider, threads=settings.threads, spinning=False)
    static = [d for d in predictor.inputs["x"].shape[:2] if not isinstance(d, str)]
    if static:
        raise ValueError(f"{settings.model} has fixed batch/sequence sizes {predictor.inputs['x'].shape[:2]}; "
                         "the server batches and streams, so export with --form native or decomposed")
    srv = Server(settings, predictor)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        srv.batcher.start()
        sweeper = asyncio.create_task(srv.sessions.sweep_forever()) if srv.sessions else None
        yield
        if sweeper:
            sweeper.cancel()
        await srv.batcher.stop()

    app = ServingApp(title="lstm-onnx-pipeline", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = srv
    app.add_middleware(MetricsMiddleware, metrics=srv.metrics)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse(ApiError(exc.status_code, "http", str(exc.detail)).body(), exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        return JSONResponse(ApiError(500, "internal", f"{type(exc).__name__}: {exc}").body(), 500)

    @app.post("/v1/sessions", status_code=201)
    async def open_session():
        if srv.sessions is None:
            srv.session("")  # raises the 409
        try:
            session = srv.sessions.create()
        except SessionLimit as exc:
            srv.metrics.rejected.inc(reason="session_limit")
            raise ApiError(503, "too_many_sessions", str(exc), f"at most {settings.max_sessions} open sessions",
                           {"Retry-After": RETRY_AFTER_S}) from None
        return {"session_id": session.id, "ttl_s": settings.session_ttl_s}

    async def predict(body, params, media: str) -> dict:
        xs = predict_arrays(await body(), media, predictor.num_features, settings.max_items, settings.max_seq_len)
        results = await srv.run([Item(x) for x in xs])
        return {"outputs": [r["y"].tolist() for r in results]}

    async def step(body, params, media: str) -> dict:
        session = srv.session(params["sid"])
        x = step_array(await body(), media, predictor.num_features, settings.max_seq_len)
        async with session.lock:
            (result,) = await srv.run([Item(x, (session.h, session.c))])
            session.h, session.c = result["hn"], result["cn"]
            session.steps += len(x)
            session.last_used = srv.sessions.clock()
        return {"outputs": result["y"].tolist(), "steps": session.steps}

    app.hot = HotRoutes({PREDICT: predict, STEP: step}, srv.metrics, settings.max_body_bytes)

    @app.delete("/v1/sessions/{sid}")
    async def end_session(sid: str):
        srv.session(sid)
        srv.sessions.delete(sid)
        return {"deleted": sid}

    @app.get("/v1/model")
    async def model():
        return srv.model_info()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not srv.batcher.running:
            return JSONResponse({"status": "not ready", "reason": "batcher not running"}, 503)
        return {"status": "ready", "queue_depth": srv.batcher.depth}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(srv.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
