"""The Open Inference Protocol (KServe v2, as Triton speaks it) next to /v1: health, server and model metadata as
FastAPI routes, and infer as a hot route (serving/hotpath.py) through the same parse pool, range check, batcher
and sessions as /v1. Tensors: x FP32 [batch, steps, features] raw, lengths INT32 [batch] optional, y raw out.
The sequence extension (parameters.sequence_id / sequence_start / sequence_end) maps onto /v1's sessions."""
from __future__ import annotations

import contextlib
from importlib import metadata
from pathlib import Path

import numpy as np
from fastapi.responses import JSONResponse

from lstm_onnx.serving.batcher import Item
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.sessions import UnknownSession
from lstm_onnx.serving.v2_protocol import bad, encode_infer, error_body, header_length, parse_infer

VERSION = "1"  # the one version a model has here
PLATFORM = "onnxruntime_onnx"


def model_name(settings) -> str:
    return settings.model_name or Path(settings.model).stem or "lstm"


def check_model(served: str, name: str, version: str = "") -> None:
    """404 unless `name` (and `version`, if any) is the model served under `served`."""
    if name != served or version not in ("", VERSION):
        which = f"{name!r} version {version}" if version else repr(name)
        # Triton's words: its example clients check that the message starts with them
        raise ApiError(404, "unknown_model", f"Request for unknown model: {which} is not found",
                       f"model {served!r}, version {VERSION}")


def y_width(predictor) -> int:
    """The output's last dimension, -1 where the graph leaves it symbolic."""
    out = predictor.session.get_outputs()[predictor.output_names.index("y")].shape
    return out[-1] if isinstance(out[-1], int) else -1


def model_metadata(name: str, num_features: int, width: int, sequence_head: bool) -> dict:
    y = [-1, -1, width] if sequence_head else [-1, width]
    return {"name": name, "versions": [VERSION], "platform": PLATFORM,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1, num_features]},
                       {"name": "lengths", "datatype": "INT32", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": y}]}


class V2:
    def __init__(self, srv):
        self.srv, self.name = srv, model_name(srv.settings)
        self._config = None

    def check_model(self, name: str, version: str = "") -> None:
        check_model(self.name, name, version)

    def metadata(self) -> dict:
        p = self.srv.predictor
        return model_metadata(self.name, p.num_features, y_width(p), p.head == "sequence")

    # -- the hot route
    async def infer(self, body, params, media: str):
        srv, s = self.srv, self.srv.settings
        self.check_model(params["name"], params["version"])
        head = header_length(params["headers"])
        req = await srv.parser.run(parse_infer, await body(), head, srv.predictor.num_features, s.max_items,
                                   s.max_seq_len)
        return encode_infer(self.name, VERSION, req.id, req.outputs, {"y": await self.execute(req)})

    async def execute(self, req) -> np.ndarray:
        """A parsed infer request (any v2 transport: HTTP or gRPC) -> y, batch-major."""
        srv = self.srv
        bound = srv.predictor.safe_abs
        if bound is not None and not (req.largest is not None and req.largest <= bound):
            srv.check_range(req.x, "input 'x'")
        xs = list(req.x) if req.lengths is None else [x[:n] for x, n in zip(req.x, req.lengths)]
        results = await (self.sequence_step(req.sequence, xs) if req.sequence else srv.run([Item(x) for x in xs]))
        return stack([r["y"] for r in results], req.x.shape[1], srv.predictor.head == "sequence")

    async def sequence_step(self, sequence: tuple, xs: list) -> list[dict]:
        srv = self.srv
        key, start, end = sequence
        if srv.sessions is None:
            raise bad("this model has no h0/c0 inputs, so it takes no sequence_id", "a model exported with --stateful")
        if len(xs) != 1:
            raise bad(f"a sequence request carries one stream, got a batch of {len(xs)}", "x shaped [1, steps, F]")
        shown = key.split("/", 2)[2]
        if start:
            session = srv.new_session(key)
        else:
            try:
                session = srv.sessions.get(key)
            except UnknownSession:
                raise bad(f"sequence {shown} is not open: start it with sequence_start (it may have ended, or "
                          f"expired after {srv.settings.session_ttl_s:g} s idle)") from None
        try:
            result = await srv.advance(session, xs[0])
        finally:
            if end:
                with contextlib.suppress(UnknownSession):
                    srv.sessions.delete(key, session)
        return [result]

    # -- the FastAPI routes
    async def live(self):
        return {"live": True}

    async def ready(self):
        if not self.srv.batcher.running:
            return JSONResponse({"error": "not ready: batcher not running"}, 503)
        return {"ready": True}

    async def server_metadata(self):
        extensions = ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]
        extensions += ["sequence"] if self.srv.predictor.stateful else []
        return {"name": "lstm-onnx-pipeline", "version": package_version(), "extensions": extensions}

    async def model_metadata(self, name: str, version: str = ""):
        self.check_model(name, version)
        return self.metadata()

    async def model_config(self, name: str, version: str = ""):
        """The ModelConfig that `deploy triton` writes for this model, as Triton's HTTP API gives it."""
        self.check_model(name, version)
        if self._config is None:
            self._config = triton_model_config(self.srv.settings, self.name, self.srv.batching["max_batch"])
        return self._config

    async def model_stats(self, name: str = "", version: str = ""):
        """Triton's statistics: of the named model, or ("" as tritonclient sends it) of every model."""
        if name:
            self.check_model(name, version)
        return {"model_stats": [self.srv.stats.json(self.name, VERSION)]}

    async def all_stats(self):
        return await self.model_stats()

    async def repository_index(self):
        """Triton's model repository extension: the one model, loaded."""
        return [{"name": self.name, "version": VERSION, "state": "READY"}]

    async def model_ready(self, name: str, version: str = ""):
        self.check_model(name, version)
        reply = await self.ready()
        return reply if isinstance(reply, JSONResponse) else {"name": name, **reply}


def package_version() -> str:
    try:
        return metadata.version("lstm-onnx-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


def stack(ys: list, steps: int, sequence_head: bool) -> np.ndarray:
    """Per-item y -> one batch-major array; a sequence head's steps past an item's length are 0, as
    Predictor.predict(x, lengths) gives them."""
    if not sequence_head:
        return ys[0][None] if len(ys) == 1 else np.stack(ys)
    if len(ys) == 1 and len(ys[0]) == steps:
        return ys[0][None]
    out = np.zeros((len(ys), steps, ys[0].shape[-1]), np.float32)
    for k, y in enumerate(ys):
        out[k, :len(y)] = y
    return out


def install(app, srv) -> V2:
    """The v2 routes stay out of /openapi.json: KServe's own document specifies them, errors as one string,
    where ours (and its bad-input harness) has {"error": {"code", "message"}}."""
    v2 = V2(srv)
    get = lambda path: app.get(path, include_in_schema=False)  # noqa: E731
    probe = lambda path: app.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)  # noqa: E731
    probe("/v2/health/live")(v2.live)
    probe("/v2/health/ready")(v2.ready)
    get("/v2")(v2.server_metadata)
    get("/v2/")(v2.server_metadata)  # as Triton answers it; FastAPI would redirect it with an empty 307
    get("/v2/models/stats")(v2.all_stats)  # before /v2/models/{name}, which would take "stats" for a name
    app.post("/v2/repository/index", include_in_schema=False)(v2.repository_index)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        get(prefix)(v2.model_metadata)
        probe(prefix + "/ready")(v2.model_ready)
        get(prefix + "/config")(v2.model_config)
        get(prefix + "/stats")(v2.model_stats)
    return v2


def triton_model_config(settings, name: str, max_batch: int) -> dict:
    """`deploy triton`'s ModelConfig (ONNX Runtime backend) for the served model with the server's batching
    (`max_batch`: what the batcher really takes, 1 for an int8 model whatever --max-batch says)."""
    from lstm_onnx.serving.triton_config import config_json
    from lstm_onnx.serving.triton_graph import TritonModelError, triton_model
    from lstm_onnx.serving.triton_options import TritonOptions

    options = TritonOptions(name=name, max_batch_size=max_batch,
                            max_queue_delay_us=round(settings.max_wait_ms * 1000), max_queue_size=settings.max_queue)
    try:
        _, spec = triton_model(settings.model)
    except TritonModelError as exc:
        raise ApiError(500, "no_config", f"the model's Triton configuration cannot be made: {exc}") from None
    return config_json(options, spec)


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def shaped(exc: ApiError, path: str) -> dict:
    """An error in the shape of the protocol the path speaks."""
    return error_body(exc) if is_v2(path) else exc.body()
