"""The Open Inference Protocol (KServe v2, as Triton speaks it) over HTTP: health, server and model metadata,
Triton's config, statistics and repository extensions, and infer (a hot route). Tensors are parsed and encoded
by serving/v2_protocol.py, which v2 over gRPC (serving/protocols/v2_grpc.py) shares, as it shares the model
operations here (check_model, execute, metadata). Errors are one string: {"error": "<one line>"}.

Tensors: x FP32 [batch, steps, features] raw, lengths INT32 [batch] optional, y raw out. The sequence extension
(parameters.sequence_id / sequence_start / sequence_end) maps onto the core's streams. The routes stay out of
/openapi.json: KServe's own document specifies them."""
from __future__ import annotations

from importlib import metadata as package_metadata

import numpy as np

from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocols.base import Protocol, Reply, Route
from lstm_onnx.serving.v2_protocol import encode_infer, error_body, header_length, parse_infer

VERSION = "1"  # the one version a model has here
PLATFORM = "onnxruntime_onnx"
INFER = "/v2/models/{name}/infer"  # also /v2/models/{name}/versions/{version}/infer, as Triton takes it


def check_model(core, name: str, version: str = "") -> None:
    """404 unless `name` (and `version`, if any) is the model the core serves."""
    if name != core.name or version not in ("", VERSION):
        which = f"{name!r} version {version}" if version else repr(name)
        # Triton's words: its example clients check that the message starts with them
        raise ApiError(404, "unknown_model", f"Request for unknown model: {which} is not found",
                       f"model {core.name!r}, version {VERSION}")


def model_metadata(name: str, num_features: int, width: int, sequence_head: bool) -> dict:
    y = [-1, -1, width] if sequence_head else [-1, width]
    return {"name": name, "versions": [VERSION], "platform": PLATFORM,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1, num_features]},
                       {"name": "lengths", "datatype": "INT32", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": y}]}


async def metadata(core) -> dict:
    facts = await core.facts()
    return model_metadata(core.name, facts["num_features"], facts["y_width"], facts["head"] == "sequence")


async def execute(core, req, client: str = "") -> tuple[np.ndarray, list[dict]]:
    """A parsed infer request (any v2 transport) from `client` (its peer address) -> (y batch-major, the runs'
    results)."""
    facts = await core.facts()
    core.check_range(req.x, "input 'x'", req.largest)
    xs = list(req.x) if req.lengths is None else [x[:n] for x, n in zip(req.x, req.lengths)]
    results = await (core.sequence_step(req.sequence, xs, client) if req.sequence else core.run(xs))
    return stack([r["y"] for r in results], req.x.shape[1], facts["head"] == "sequence"), results


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


def version_of(call) -> str:
    return call.params.get("version", "")


# -- the routes
async def infer(core, call):
    check_model(core, call.params["name"], version_of(call))
    facts, s = await core.facts(), core.settings
    head = header_length(call.headers)
    req = await core.parse(parse_infer, await call.body(), head, facts["num_features"], s.max_items, s.max_seq_len)
    y, results = await execute(core, req, call.client)
    payload, headers = encode_infer(core.name, VERSION, req.id, req.outputs, {"y": y})
    return Reply(payload, headers={**headers, **core.reply_headers(results)})


async def live(core, call):
    return {"live": True}


async def ready(core, call):
    problem = await core.not_ready()
    if problem is not None:
        return Reply({"error": f"not ready: {problem.message}"}, 503, problem.headers)
    return {"ready": True}


async def server_metadata(core, call=None):
    return {"name": "lstm-onnx-pipeline", "version": package_version(), "extensions": list(core.extensions)}


async def model_meta(core, call):
    check_model(core, call.params["name"], version_of(call))
    return await metadata(core)


async def model_ready(core, call):
    check_model(core, call.params["name"], version_of(call))
    reply = await ready(core, call)
    return reply if isinstance(reply, Reply) else {"name": call.params["name"], **reply}


async def model_config(core, call=None, name: str = "", version: str = ""):
    """The ModelConfig that `deploy triton` writes for this model, as Triton's HTTP API gives it."""
    if call is not None:
        name, version = call.params["name"], version_of(call)
    check_model(core, name, version)
    if "config" not in core.memo:
        facts = await core.facts()
        core.memo["config"] = triton_model_config(core.settings, core.name, facts["batching"]["max_batch"])
    return core.memo["config"]


async def model_stats(core, call=None, name: str = "", version: str = ""):
    """Triton's statistics: of the named model, or ("" as tritonclient sends it) of every model."""
    if call is not None:
        name, version = call.params.get("name", ""), version_of(call)
    if name:
        check_model(core, name, version)
    return {"model_stats": [core.stats(core.name, VERSION)]}


async def repository_index(core, call=None):
    """Triton's model repository extension: the one model, loaded."""
    return [{"name": core.name, "version": VERSION, "state": "READY"}]


def package_version() -> str:
    try:
        return package_metadata.version("lstm-onnx-pipeline")
    except package_metadata.PackageNotFoundError:
        return "unknown"


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


def _routes():
    get, probe = ("GET",), ("GET", "HEAD")
    route = lambda methods, path, handler, needs="": Route(methods, path, handler, needs=needs,  # noqa: E731
                                                           in_schema=False)
    routes = [route(probe, "/v2/health/live", live), route(probe, "/v2/health/ready", ready),
              route(get, "/v2", server_metadata),
              route(get, "/v2/", server_metadata),  # as Triton answers it; FastAPI would redirect it with a 307
              route(get, "/v2/models/stats", model_stats, "statistics"),  # before /v2/models/{name}
              route(("POST",), "/v2/repository/index", repository_index, "model_repository")]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [route(get, prefix, model_meta), route(probe, prefix + "/ready", model_ready),
                   route(get, prefix + "/config", model_config, "model_configuration"),
                   route(get, prefix + "/stats", model_stats, "statistics"),
                   Route(("POST",), prefix + "/infer", infer, hot=True, in_schema=False)]
    return tuple(routes)


PROTOCOL = Protocol("v2", "/v2", error_body, _routes())
