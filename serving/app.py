"""The FastAPI app: predict (batched), streaming sessions, model info, health and Prometheus metrics."""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstm_onnx.core.machine import fingerprint
from lstm_onnx.serving import openapi, protocols
from lstm_onnx.serving.admission import ABUSE_LIMITS
from lstm_onnx.serving.auth import UNAUTHORIZED, BearerCheck
from lstm_onnx.serving.batcher import Batcher, Item, QueueFull, QueueTimeout
from lstm_onnx.serving.hotpath import HotRoutes, call_of, encoded, respond
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.metrics import Metrics
from lstm_onnx.serving.model_stats import ModelStats
from lstm_onnx.serving.parse_pool import ParsePool
from lstm_onnx.serving.protocols.base import Reply
from lstm_onnx.serving.request_core import (
    NOT_STATEFUL,
    RequestCore,
    check_sequence,
    model_facts,
    model_info,
    model_name,
    overloaded,
    retry_later,
)
from lstm_onnx.serving.sessions import ClientSessionLimit, SessionLimit, SessionOwned, SessionStore, UnknownSession
from lstm_onnx.serving.settings import ServeSettings
from lstm_onnx.serving.v2_protocol import bad

# Quantizations whose results depend on what else shares a run, and why: such models get no cross-request
# batching, so that a request's numbers never depend on its batch-mates.
BATCH_DEPENDENT = {"int8": "int8 dynamic quantization takes one activation scale for all the sequences in a run, "
                           "so a sequence's result would depend on the sequences sharing its batch"}
# what /v1/model reports under "limits"
LIMITS = ("max_batch", "max_wait_ms", "max_queue", "max_items", "max_seq_len", "max_body_bytes", "session_ttl_s",
          "max_sessions", "workers", "max_header_bytes", "header_timeout_s", "body_timeout_s", "graceful_timeout_s",
          *ABUSE_LIMITS)
NOT_READY = ApiError(503, "not_ready", "batcher not running", "a started server")
log = logging.getLogger("uvicorn.error")  # uvicorn's own log, where its startup lines go


class Server(RequestCore):
    """The request core on this process (serving/request_core.py): settings, predictor, batcher, sessions,
    metrics."""

    def __init__(self, settings: ServeSettings, predictor):
        self.settings, self.predictor = settings, predictor
        self.name, self.memo = model_name(settings), {}
        self.extensions = ("binary_tensor_data", "model_configuration", "statistics", "model_repository",
                           *(("sequence",) if predictor.stateful else ()))
        self.batching = batching_policy(predictor, settings.max_batch)
        self.model_stats = ModelStats()
        self.batcher = Batcher(predictor, self.batching["max_batch"], settings.max_wait_ms, settings.max_queue,
                               settings.workers, on_batch=lambda n: self.metrics.batch_size.observe(n),
                               on_run=self.model_stats.run, timeout_s=settings.queue_timeout_s)
        self.parser = ParsePool(settings.max_parse_queue, lambda: self.metrics.rejected.inc(reason="parse_queue_full"))
        if "why" in self.batching and settings.max_batch > 1:
            log.info("batching: %s", self.batching["why"])
        self.sessions = (SessionStore(predictor.num_states, predictor.hidden_size, settings.session_ttl_s,
                                      settings.max_sessions, max_per_client=settings.max_sessions_per_client)
                         if predictor.stateful else None)
        self.metrics = Metrics(lambda: self.batcher.depth, lambda: len(self.sessions or ()))
        self.grpc_port = 0  # once started
        self.machine = fingerprint()  # what /v1/model reports; it does not change while the process runs
        self._facts = model_facts(predictor, self.batching, self.machine)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        sweeper = asyncio.create_task(self.sessions.sweep_forever()) if self.sessions else None
        grpc_server = None
        if self.settings.grpc_port:
            from lstm_onnx.serving.protocols.v2_grpc import start

            s = self.settings
            grpc_server, self.grpc_port = await start(self, s.host, s.grpc_port, s.max_body_bytes)
            log.info("Open Inference Protocol over gRPC on %s:%d", s.host, self.grpc_port)
        yield
        if grpc_server is not None:
            await grpc_server.stop(self.settings.graceful_timeout_s)
        if sweeper:
            sweeper.cancel()
        await self.batcher.stop()
        self.parser.close()

    # -- the request core
    async def facts(self) -> dict:
        return self._facts

    async def parse(self, parse, *args):
        return await self.parser.run(parse, *args)

    async def run(self, xs: list) -> list[dict]:
        return await self.submit([Item(x) for x in xs])

    async def submit(self, items: list[Item]) -> list[dict]:
        start, ok = time.perf_counter_ns(), False
        try:
            results = await self.batcher.submit(items)
            ok = True
            return results
        except QueueFull as exc:
            self.metrics.rejected.inc(reason="queue_full")
            raise overloaded(str(exc)) from None
        except QueueTimeout as exc:
            self.metrics.rejected.inc(reason="queue_timeout")
            raise retry_later("queue_timeout", str(exc), "retry after the Retry-After header's seconds, or a less "
                              "loaded server") from None
        finally:
            self.model_stats.request(len(items), time.perf_counter_ns() - start, ok)

    async def stream(self, sid: str):
        return self.session(sid)

    def session(self, sid: str):
        if self.sessions is None:
            raise NOT_STATEFUL
        try:
            return self.sessions.get(sid)
        except UnknownSession:
            raise ApiError(404, "unknown_session", f"no session {sid!r} (never created, deleted or expired "
                           f"after {self.settings.session_ttl_s:g} s idle)", "an id from POST /v1/sessions") from None

    async def step_stream(self, session, x) -> tuple[dict, dict]:
        result = await self.advance(session, x)
        return result, {"steps": session.steps}

    async def advance(self, session, x) -> dict:
        """Run raw x [S, F] on from the session's h/c and keep the new state (one step at a time per session)."""
        async with session.lock:
            (result,) = await self.submit([Item(x, (session.h, session.c))])
            session.h, session.c = result["hn"], result["cn"]
            session.steps += len(x)
            session.last_used = self.sessions.clock()
        return result

    async def open_stream(self, client: str = "") -> dict:
        if self.sessions is None:
            raise NOT_STATEFUL
        session = self.new_session(client=client)
        return {"session_id": session.id, "ttl_s": self.settings.session_ttl_s}

    def new_session(self, sid: str | None = None, client: str = ""):
        try:
            return self.sessions.create(sid, client)
        except ClientSessionLimit as exc:
            self.metrics.rejected.inc(reason="client_session_quota")
            raise retry_later("too_many_sessions_for_client", str(exc), f"at most "
                              f"{self.settings.max_sessions_per_client} open sessions per client", 429) from None
        except SessionOwned as exc:
            raise sequence_owned(exc) from None
        except SessionLimit as exc:
            self.metrics.rejected.inc(reason="session_limit")
            raise retry_later("too_many_sessions", str(exc), f"at most {self.settings.max_sessions} open "
                              "sessions") from None

    async def end_stream(self, sid: str) -> None:
        self.session(sid)
        self.sessions.delete(sid)

    async def sequence_step(self, sequence: tuple, xs: list, client: str = "") -> list[dict]:
        """v2 sequence ids are session keys `v2/<int|str>/<id>` in the one SessionStore (v1 ids never hold "/"),
        so a client's sequences and sessions count against one quota."""
        key, start, end = sequence
        check_sequence(self.sessions is not None, xs)
        shown = key.split("/", 2)[2]
        if start:
            session = self.new_session(key, client)
        else:
            try:
                session = self.sessions.get(key, client)
            except SessionOwned as exc:
                raise sequence_owned(exc) from None
            except UnknownSession:
                raise bad(f"sequence {shown} is not open: start it with sequence_start (it may have ended, or "
                          f"expired after {self.settings.session_ttl_s:g} s idle)") from None
        try:
            result = await self.advance(session, xs[0])
        finally:
            if end:
                with contextlib.suppress(UnknownSession):
                    self.sessions.delete(key, session)
        return [result]

    async def not_ready(self) -> ApiError | None:
        return None if self.batcher.running else NOT_READY

    def load(self) -> dict:
        return {"queue_depth": self.batcher.depth}

    def stats(self, name: str, version: str) -> dict:
        return self.model_stats.json(name, version)

    async def model_info(self) -> dict:
        p = self.predictor
        io = lambda vs: [{"name": v.name, "shape": v.shape, "type": v.type} for v in vs]  # noqa: E731
        return model_info(self._facts, self.settings, LIMITS, inputs=io(p.session.get_inputs()),
                          outputs=io(p.session.get_outputs()), io=p.meta.get("io"), placement=p.placement)

    async def render_metrics(self):
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")


def sequence_owned(exc: SessionOwned) -> ApiError:
    shown = exc.args[0].split("/", 2)[-1]  # the client's id, without the session key's "v2/<int|str>/"
    return ApiError(409, "sequence_owned", f"sequence {shown} is open for another client",
                    "a sequence_id no other client has open")


def batching_policy(predictor, max_batch: int) -> dict:
    """How the batcher may combine sequences, as /v1/model reports it."""
    why = BATCH_DEPENDENT.get(predictor.meta.get("quantization", "none"))
    if why:
        return {"cross_request": False, "max_batch": 1, "how": "one sequence per run",
                "why": why + "; each sequence runs alone, whatever --max-batch says"}
    how = "padded with sequence_lens" if predictor.has_lengths else "grouped by length"
    return {"cross_request": max_batch > 1, "max_batch": max_batch, "how": how}


class ServingApp(FastAPI):
    """FastAPI, with the bearer check and the protocols' hot routes (serving/hotpath.py) in front of its
    middleware stack."""

    hot: HotRoutes | None = None
    auth: BearerCheck | None = None
    on_refused = staticmethod(lambda: None)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if self.auth is not None and not self.auth.allows(scope):
                self.on_refused()
                return await respond(send, UNAUTHORIZED.status, protocols.error_body(UNAUTHORIZED, scope["path"]),
                                     UNAUTHORIZED.headers)
            found = self.hot.match(scope["path"]) if self.hot is not None else None
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


def load_predictor(settings: ServeSettings):
    """The settings' model, refused (ValueError) where the server cannot serve it as asked: fixed batch/sequence
    sizes, or with `strict_placement` a node placed elsewhere than the requested provider. Placement problems
    are otherwise logged, loudly, once."""
    from lstm_onnx.runtimes.embed import Predictor

    predictor = Predictor.load(settings.model, settings.provider, threads=settings.threads, spinning=False,
                               allow_tf32=settings.allow_tf32, warn=False)
    problems = predictor.placement_problems
    if problems and settings.strict_placement:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"--strict-placement: {problems[0]}{more}")
    for problem in problems:
        log.warning("placement: %s", problem)
    return predictor


def check_servable(predictor, model: str) -> None:
    if predictor.series_normalization:
        raise ValueError(f"{model} normalizes each series with its own statistics, and requests name no series; "
                         "serve a model trained with normalize = \"global\", or use Predictor.forecast in an app")
    static = [d for d in predictor.inputs["x"].shape[:2] if not isinstance(d, str)]
    if static:
        raise ValueError(f"{model} has fixed batch/sequence sizes {predictor.inputs['x'].shape[:2]}; "
                         "the server batches and streams, so export with --form native or decomposed")


async def api_error(request, exc: ApiError):
    return JSONResponse(protocols.error_body(exc, request.url.path), exc.status, headers=exc.headers)


async def http_error(request, exc: StarletteHTTPException):
    return JSONResponse(protocols.error_body(ApiError(exc.status_code, "http", str(exc.detail)), request.url.path),
                        exc.status_code, headers=exc.headers)  # 405's Allow


async def internal_error(request, exc: Exception):
    error = ApiError(500, "internal", f"{type(exc).__name__}: {exc}")
    return JSONResponse(protocols.error_body(error, request.url.path), 500)


def mount(app: FastAPI, router, core, limit: int) -> None:
    """The router's routes that are not hot, as FastAPI routes (its middleware, /openapi.json), over `core`."""
    for route in router.routes:
        if route.hot:
            continue
        endpoint = fastapi_endpoint(route, core, limit)
        for method in route.methods:
            app.add_api_route(route.path, endpoint, methods=[method], status_code=route.status,
                              include_in_schema=route.in_schema and method != "HEAD")


def fastapi_endpoint(route, core, limit: int):
    """An endpoint that hands the request to the route's handler. Its signature names the path parameters, so
    FastAPI extracts them and documents them."""
    async def endpoint(request: Request, **params):
        reply = await route.handler(core, call_of(request.scope, request.receive, params, limit))
        if not isinstance(reply, Reply):
            return reply
        body, media = encoded(reply.payload)
        return Response(body, reply.status, reply.headers, media.decode())

    names = [part[1:-1] for part in route.path.split("/") if part[:1] == "{"]
    endpoint.__signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=str) for n in names])
    endpoint.__name__ = route.handler.__name__  # FastAPI's summary and operationId
    return endpoint


def create_app(settings: ServeSettings, predictor=None) -> FastAPI:
    """`predictor`: a loaded runtimes.embed.Predictor (loaded from settings.model when None)."""
    predictor = predictor if predictor is not None else load_predictor(settings)
    check_servable(predictor, settings.model)
    srv = Server(settings, predictor)
    app = ServingApp(title="lstm-onnx-pipeline", lifespan=srv.lifespan, docs_url=None, redoc_url=None)
    app.state.server = srv
    app.add_middleware(MetricsMiddleware, metrics=srv.metrics)
    for kind, handler in ((ApiError, api_error), (StarletteHTTPException, http_error), (Exception, internal_error)):
        app.add_exception_handler(kind, handler)
    if settings.grpc_port:
        try:
            import lstm_onnx.serving.protocols.v2_grpc  # noqa: F401 - the service classes come from tritonclient
        except ImportError as exc:
            raise ValueError(f"--grpc-port needs tritonclient[grpc] ({exc.name} missing): pip install "
                             "'lstm-onnx-pipeline[triton]'") from None
    router = protocols.router(srv.extensions)
    app.hot = HotRoutes(router, srv, srv.metrics, settings.max_body_bytes)
    if settings.auth_token is not None:
        app.auth = BearerCheck(settings.auth_token)
        app.on_refused = lambda: srv.metrics.rejected.inc(reason="unauthorized")
    mount(app, router, srv, settings.max_body_bytes)
    app.get("/metrics", response_class=PlainTextResponse)(srv.render_metrics)
    install_openapi(app, predictor, settings)
    return app


def install_openapi(app: FastAPI, predictor, settings: ServeSettings) -> None:
    def schema() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.build(app, predictor.num_features, settings.max_items, settings.max_seq_len,
                                               settings.auth_token is not None, predictor.safe_abs)
        return app.openapi_schema

    app.openapi = schema
