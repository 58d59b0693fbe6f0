"""The two Ray Serve deployments behind serving/ray_app.py. Imports ray and fastapi: import it lazily.

No `from __future__ import annotations`: FastAPI must see `Request` itself in the ingress methods' signatures."""

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lstm_onnx.core.machine import fingerprint
from lstm_onnx.runtimes.embed import PredictorError, range_problem
from lstm_onnx.serving import state_token
from lstm_onnx.serving.app import UNAUTHORIZED, api_error, batching_policy, check_servable, http_error, internal_error
from lstm_onnx.serving.auth import BearerCheck
from lstm_onnx.serving.bodies import predict_arrays, step_array
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.settings import ServeSettings
from lstm_onnx.serving.v2_protocol import bad, encode_infer, header_length, parse_infer
from lstm_onnx.serving.v2_routes import (
    VERSION,
    check_model,
    model_metadata,
    model_name,
    package_version,
    stack,
    y_width,
)

RETRY_AFTER_S = "1"
REPLICA_HEADER = "X-Replica-Id"


def replica_unavailable(why: str) -> ApiError:
    return ApiError(503, "replica_unavailable", f"the model replica serving this request went away ({why})",
                    "retry after the Retry-After header's seconds: Ray restarts the replica",
                    {"Retry-After": RETRY_AFTER_S})


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
        p = self.predictor
        return {"num_features": p.num_features, "stateful": p.stateful, "head": p.head,
                "num_states": p.num_states if p.stateful else None,
                "hidden_size": p.hidden_size if p.stateful else None, "lengths_input": p.has_lengths,
                "meta": {k: p.meta.get(k) for k in ("form", "version", "opset", "feature_names", "target_names")},
                "safe_abs": p.safe_abs, "batching": self.batching, "providers": p.session.get_providers(),
                "machine": fingerprint(),
                "y_width": y_width(p)}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)  # replaced from the settings in __init__
    async def run(self, items: list[tuple]) -> list[dict]:
        """items: (x [S, F], state (h, c) or None) -> {"y", "hn", "cn", "replica"} per item."""
        results = self.predictor.run_ragged([x for x, _ in items], [s for _, s in items])
        return [dict(r, replica=self.id) for r in results]


V2_ROUTES = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")


class V2Routes:
    """The Open Inference Protocol on the ingress, parsed and encoded by serving/v2_protocol.py as our server
    does. No sequence extension: a sequence_id names server-side state, which replicas without affinity do not
    share; streams use /v1/sessions, whose session_id carries the state."""

    @api.get("/v2/health/live")
    async def v2_live(self):
        return {"live": True}

    @api.get("/v2/health/ready")
    async def v2_ready(self):
        try:
            await self.info()
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            raise replica_unavailable(type(exc).__name__) from None
        return {"ready": True}

    @api.get("/v2")
    async def v2_server(self):
        return {"name": "lstm-onnx-pipeline", "version": package_version(), "extensions": ["binary_tensor_data"]}

    def check_model(self, name: str, version: str | None) -> None:
        check_model(self.name, name, version or "")

    @api.get(V2_ROUTES[0])
    @api.get(V2_ROUTES[1])
    async def v2_metadata(self, name: str, version: str | None = None):
        self.check_model(name, version)
        info = await self.info()
        return model_metadata(self.name, info["num_features"], info["y_width"], info["head"] == "sequence")

    @api.get(V2_ROUTES[0] + "/ready")
    @api.get(V2_ROUTES[1] + "/ready")
    async def v2_model_ready(self, name: str, version: str | None = None):
        self.check_model(name, version)
        return await self.v2_ready()

    @api.post(V2_ROUTES[0] + "/infer")
    @api.post(V2_ROUTES[1] + "/infer")
    async def v2_infer(self, name: str, request: Request, version: str | None = None):
        self.guard(request)
        self.check_model(name, version)
        info, s = await self.info(), self.settings
        head = header_length(request.headers.raw)
        req = parse_infer(await self.body(request), head, info["num_features"], s.max_items, s.max_seq_len)
        if req.sequence is not None:
            raise bad("the sequence extension is not served on Ray Serve (no session affinity)",
                      "no sequence_id; stream through /v1/sessions, whose session_id carries the state")
        self.check_range(info, req.x, "input 'x'")
        lengths = req.lengths if req.lengths is not None else np.full(len(req.x), req.x.shape[1], np.int32)
        results = await self.call([(x[:n], None) for x, n in zip(req.x, lengths)])
        y = stack([r["y"] for r in results], req.x.shape[1], info["head"] == "sequence")
        payload, headers = encode_infer(self.name, VERSION, req.id, req.outputs, {"y": y})
        headers = {k: str(v) for k, v in headers.items()}
        headers[REPLICA_HEADER] = ",".join(dict.fromkeys(r["replica"] for r in results))
        if isinstance(payload, bytes):
            return Response(payload, headers=headers, media_type="application/octet-stream")
        return JSONResponse(payload, headers=headers)


@serve.deployment
@serve.ingress(api)
class Ingress(V2Routes):
    """Parses and checks like serving/app.py, calls the model, and carries stream state as signed tokens."""

    def __init__(self, model, settings: ServeSettings, key: bytes, info: dict | None = None):
        self.model, self.settings, self.key = model, settings, key
        self._info = info
        self.name = model_name(settings)
        self.auth = BearerCheck(settings.auth_token) if settings.auth_token is not None else None

    def guard(self, request: Request) -> None:
        """The same bearer check as our server: every route but the probes."""
        if self.auth is not None and not self.auth.allows(request.scope):
            raise UNAUTHORIZED

    async def info(self) -> dict:
        if self._info is None:
            self._info = await self.model.info.remote()
        return self._info

    async def body(self, request: Request) -> bytes:
        raw = await request.body()
        if len(raw) > self.settings.max_body_bytes:
            raise ApiError(413, "body_too_large", f"body is {len(raw)} bytes, more than the limit "
                           f"{self.settings.max_body_bytes}", f"at most {self.settings.max_body_bytes} bytes")
        return raw

    def check_range(self, info: dict, x: np.ndarray, where: str) -> None:
        problem = range_problem(x, info["safe_abs"])
        if problem:
            raise ApiError(422, "out_of_range", f"{where}: {problem}", "values the model can normalize")

    async def call(self, items: list[tuple]) -> list[dict]:
        try:
            return [await r for r in [self.model.run.remote(item) for item in items]]
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            raise replica_unavailable(type(exc).__name__) from None
        except PredictorError as exc:  # arrives as a RayTaskError that is also a PredictorError
            raise ApiError(422, "bad_input", str(exc).strip().splitlines()[-1]) from None

    @staticmethod
    def answer(payload: dict, replicas) -> JSONResponse:
        return JSONResponse(payload, headers={REPLICA_HEADER: ",".join(dict.fromkeys(replicas))})

    @api.post("/v1/predict")
    async def predict(self, request: Request):
        self.guard(request)
        info, s = await self.info(), self.settings
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        xs = predict_arrays(await self.body(request), media, info["num_features"], s.max_items, s.max_seq_len)
        for k, x in enumerate(xs):
            self.check_range(info, x, f"inputs[{k}]")
        results = await self.call([(x, None) for x in xs])
        return self.answer({"outputs": [r["y"].tolist() for r in results]}, [r["replica"] for r in results])

    async def stateful_info(self) -> dict:
        info = await self.info()
        if not info["stateful"]:
            raise ApiError(409, "not_stateful", "this model has no h0/c0 inputs, so it cannot stream",
                           "a model exported with --stateful")
        return info

    @api.post("/v1/sessions", status_code=201)
    async def open_session(self, request: Request):
        self.guard(request)
        info = await self.stateful_info()
        zeros = np.zeros((info["num_states"], info["hidden_size"]), np.float32)
        return {"session_id": state_token.encode(self.key, zeros, zeros, 0), "state": "client",
                "ttl_s": None}

    @api.post("/v1/sessions/{sid}/step")
    async def step(self, sid: str, request: Request):
        self.guard(request)
        info = await self.stateful_info()
        h, c, steps = state_token.decode(self.key, sid, info["num_states"], info["hidden_size"])
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        x = step_array(await self.body(request), media, info["num_features"], self.settings.max_seq_len)
        self.check_range(info, x, "inputs")
        (result,) = await self.call([(x, (h, c))])
        steps += len(x)
        token = state_token.encode(self.key, result["hn"], result["cn"], steps)
        return self.answer({"outputs": result["y"].tolist(), "steps": steps, "session_id": token},
                           [result["replica"]])

    @api.delete("/v1/sessions/{sid}")
    async def end_session(self, sid: str, request: Request):
        self.guard(request)
        info = await self.stateful_info()
        state_token.decode(self.key, sid, info["num_states"], info["hidden_size"])  # 404 for a bad token
        return {"deleted": sid}

    @api.get("/v1/model")
    async def model_info(self, request: Request):
        self.guard(request)
        info = await self.info()
        return {"path": self.settings.model, **info["meta"], "head": info["head"],
                "num_features": info["num_features"], "stateful": info["stateful"],
                "lengths_input": info["lengths_input"], "batching": info["batching"],
                "providers": info["providers"], "machine": info["machine"], "engine": "ray", "sessions": "state travels in session_id",
                "limits": {k: getattr(self.settings, k) for k in ("max_batch", "max_wait_ms", "max_items",
                                                                   "max_seq_len", "max_body_bytes")}}

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self):
        try:
            await self.info()
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            refusal = replica_unavailable(type(exc).__name__)
            return JSONResponse(refusal.body(), 503, headers=refusal.headers)
        return {"status": "ready"}


def application(settings: ServeSettings, key: bytes, model_options: dict):
    # Ray's default of 5 ongoing requests per replica would cap a batch at 5: let a whole batch be in flight.
    model = Model.options(max_ongoing_requests=2 * settings.max_batch, max_queued_requests=settings.max_queue,
                          **model_options).bind(settings)
    # The ingress only parses and forwards: it asks for no CPU of its own, so N replicas fit on N cores.
    return Ingress.options(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4 * settings.max_batch,
                           max_queued_requests=settings.max_queue).bind(model, settings, key)
