"""The two Ray Serve deployments behind serving/ray_app.py, and the request core they give the protocols
(RayCore). Imports ray and fastapi: import it lazily.

The ingress mounts the same protocol modules as our server (serving/protocols/), through one catch-all route
that hands each request to the same router and hot-path code with RayCore as the core: the same checks, limits
and error shapes. Ray's gRPC proxy calls the ingress's gRPC methods (serving/ray_grpc.py), which hand each call
to the gRPC protocol module's Service over the same RayCore. No `from __future__ import annotations`: FastAPI
must see `Request` itself in the signature."""

import copy

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstm_onnx.core.machine import fingerprint
from lstm_onnx.runtimes.embed import PredictorError
from lstm_onnx.serving import protocols, state_token
from lstm_onnx.serving.app import api_error, batching_policy, check_servable, http_error, internal_error
from lstm_onnx.serving.auth import UNAUTHORIZED, BearerCheck
from lstm_onnx.serving.hotpath import answer, encoded
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocols.base import Router
from lstm_onnx.serving.ray_grpc import GrpcRoutes, register_protos
from lstm_onnx.serving.request_core import (
    RequestCore,
    check_sequence,
    model_facts,
    model_info,
    model_name,
    retry_later,
)
from lstm_onnx.serving.settings import ServeSettings
from lstm_onnx.serving.v2_protocol import bad

REPLICA_HEADER = "X-Replica-Id"
LIMITS = ("max_batch", "max_wait_ms", "max_items", "max_seq_len", "max_body_bytes")  # the ones Ray's ingress keeps
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
GONE = (ActorDiedError, ActorUnavailableError, RayActorError)
# a unary sequence request, over HTTP or gRPC: its sequence_id names state that replicas without affinity do not share
NO_AFFINITY = bad("the sequence extension is not served on Ray Serve (no session affinity)",
                  "no sequence_id; stream through /v1/sessions, whose session_id carries the state, or send a "
                  "sequence's requests on one gRPC ModelStreamInfer stream")


def replica_unavailable(why: str) -> ApiError:
    return retry_later("replica_unavailable", f"the model replica serving this request went away ({why})",
                       "retry after the Retry-After header's seconds: Ray restarts the replica")


api = FastAPI(title="lstm-onnx-pipeline (Ray Serve)", docs_url=None, redoc_url=None)
for _kind, _handler in ((ApiError, api_error), (StarletteHTTPException, http_error), (Exception, internal_error)):
    api.add_exception_handler(_kind, _handler)


def replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


@serve.deployment
class Model:
    """One Predictor per replica; requests from any ingress are batched by @serve.batch."""

    def __init__(self, settings: ServeSettings):
        from lstm_onnx.serving.app import load_predictor

        self.predictor = load_predictor(settings)
        check_servable(self.predictor, settings.model)
        self.batching = batching_policy(self.predictor, settings.max_batch)
        self.run.set_max_batch_size(self.batching["max_batch"])
        self.run.set_batch_wait_timeout_s(settings.max_wait_ms / 1000)
        self.id = replica_id()

    def info(self) -> dict:
        return model_facts(self.predictor, self.batching, fingerprint())

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)  # replaced from the settings in __init__
    async def run(self, items: list[tuple]) -> list[dict]:
        """items: (x [S, F], state (h, c) or None) -> {"y", "hn", "cn", "replica"} per item."""
        results = self.predictor.run_ragged([x for x, _ in items], [s for _, s in items])
        return [dict(r, replica=self.id) for r in results]


class RayCore(RequestCore):
    """The request core on Ray Serve: runs go to the Model deployment (batched there), a v1 stream's h/c travels
    as a signed token in its session_id, and v2 sequences are refused (a sequence_id names server-side state,
    which replicas without affinity do not share) but on a gRPC stream, which stays on one ingress replica for
    its life: its core (for_stream) keeps the stream's sequences."""

    extensions = ("binary_tensor_data", "model_configuration", "model_repository")
    sequences: dict | None = None  # key -> (h, c) of a gRPC stream's open sequences; None: not a stream's core

    def __init__(self, model, settings: ServeSettings, key: bytes):
        self.model, self.settings, self.key = model, settings, key
        self.name, self.memo = model_name(settings), {}

    async def facts(self) -> dict:
        if self._facts is None:
            try:
                self._facts = await self.model.info.remote()
            except GONE as exc:
                raise replica_unavailable(type(exc).__name__) from None
        return self._facts

    async def call(self, items: list[tuple]) -> list[dict]:
        try:
            return [await r for r in [self.model.run.remote(item) for item in items]]
        except GONE as exc:
            raise replica_unavailable(type(exc).__name__) from None
        except PredictorError as exc:  # arrives as a RayTaskError that is also a PredictorError
            raise ApiError(422, "bad_input", str(exc).strip().splitlines()[-1]) from None

    async def run(self, xs: list) -> list[dict]:
        return await self.call([(x, None) for x in xs])

    async def stream(self, sid: str):
        facts = await self.require_stateful()
        return state_token.decode(self.key, sid, facts["num_states"], facts["hidden_size"])  # 404 for a bad one

    async def open_stream(self, client: str = "") -> dict:  # no server-side streams: no per-client quota
        facts = await self.require_stateful()
        zeros = np.zeros((facts["num_states"], facts["hidden_size"]), np.float32)
        return {"session_id": state_token.encode(self.key, zeros, zeros, 0), "state": "client", "ttl_s": None}

    async def step_stream(self, stream, x) -> tuple[dict, dict]:
        h, c, steps = stream
        (result,) = await self.call([(x, (h, c))])
        steps += len(x)
        return result, {"steps": steps, "session_id": state_token.encode(self.key, result["hn"], result["cn"], steps)}

    async def end_stream(self, sid: str) -> None:
        await self.stream(sid)  # nothing to delete: the state lives in the token

    def for_stream(self) -> "RayCore":
        core = copy.copy(self)
        core.sequences = {}
        return core

    async def sequence_step(self, sequence: tuple, xs: list, client: str = "") -> list[dict]:
        """As app.Server's, with the stream's sequences in place of the SessionStore, at most --max-sessions."""
        if self.sequences is None:
            raise NO_AFFINITY
        key, start, end = sequence
        facts = await self.facts()
        check_sequence(facts["stateful"], xs)
        shown, cap = key.split("/", 2)[2], self.settings.max_sessions
        if start:
            if key not in self.sequences and len(self.sequences) >= cap:
                raise ApiError(503, "too_many_sessions", f"this stream has {len(self.sequences)} open sequences",
                               f"at most {cap} per stream; end one with sequence_end")
            zeros = np.zeros((facts["num_states"], facts["hidden_size"]), np.float32)
            self.sequences[key] = (zeros, zeros)
        elif key not in self.sequences:
            raise bad(f"sequence {shown} is not open on this stream: start it with sequence_start (it may have "
                      "ended, or been started on another stream)")
        try:
            (result,) = await self.call([(xs[0], self.sequences[key])])
            self.sequences[key] = (result["hn"], result["cn"])
        finally:
            if end:
                self.sequences.pop(key, None)
        return [result]

    async def not_ready(self) -> ApiError | None:
        try:
            await self.facts()
        except ApiError as exc:
            return exc
        return None

    def stats(self, name: str, version: str) -> dict:
        raise ApiError(501, "not_implemented", "statistics are not served on Ray Serve: each model replica counts "
                       "its own runs and no replica sees the others'", "Ray Serve's metrics")

    def reply_headers(self, results: list[dict]) -> dict:
        return {REPLICA_HEADER: ",".join(dict.fromkeys(r["replica"] for r in results))}

    async def model_info(self) -> dict:
        return model_info(await self.facts(), self.settings, LIMITS, engine="ray",
                          sessions="state travels in session_id")


@serve.deployment
@serve.ingress(api)
class Ingress(GrpcRoutes):
    """Every path goes to the router of `registered` (the driver's protocols.PROTOCOLS), over RayCore; the bearer
    check is our server's. Ray's gRPC proxy calls the methods of GrpcRoutes (serving/ray_grpc.py)."""

    def __init__(self, model, settings: ServeSettings, key: bytes, registered: tuple):
        self.core = RayCore(model, settings, key)
        self.router = Router(registered, self.core.extensions)
        self.auth = BearerCheck(settings.auth_token) if settings.auth_token is not None else None
        register_protos()  # gRPC requests arrive pickled (serving/ray_grpc.py)

    @api.api_route("/{path:path}", methods=METHODS)
    async def serve_any(self, path: str, request: Request):
        scope = request.scope
        path = scope["path"]  # the whole path, where `path` lacks its leading "/"
        if self.auth is not None and not self.auth.allows(scope):
            reply = UNAUTHORIZED.status, self.router.error_body(UNAUTHORIZED, path), UNAUTHORIZED.headers
        else:
            found = self.router.match(path)
            if found is None:
                reply = 404, self.router.error_body(ApiError(404, "http", "Not Found"), path), None
            else:
                reply = await answer(self.router, self.core, scope, request.receive, *found,
                                     self.core.settings.max_body_bytes)
                if reply is None:  # the client went away
                    return Response(status_code=499)
        status, payload, headers = reply
        body, media = encoded(payload)
        return Response(body, status, {k: str(v) for k, v in (headers or {}).items()}, media.decode())


def application(settings: ServeSettings, key: bytes, model_options: dict):
    # Ray's default of 5 ongoing requests per replica would cap a batch at 5: let a whole batch be in flight.
    model = Model.options(max_ongoing_requests=2 * settings.max_batch, max_queued_requests=settings.max_queue,
                          **model_options).bind(settings)
    # The ingress only parses and forwards: it asks for no CPU of its own, so N replicas fit on N cores.
    return Ingress.options(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4 * settings.max_batch,
                           max_queued_requests=settings.max_queue).bind(model, settings, key, protocols.PROTOCOLS)
