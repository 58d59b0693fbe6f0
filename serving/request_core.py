"""The request core: what every protocol's handlers share, behind one interface with two backends, the local
server (serving/app.py's Server: batcher, SessionStore, ModelStats) and Ray Serve's ingress
(serving/ray_deployments.py's RayCore: the Model deployment, stream state as signed tokens).

Handlers (serving/protocols/) call only this interface: the model's facts, parsing off the event loop, the range
and stateful checks, runs (batching, back-pressure), streams (v1 sessions, v2 sequences) and readiness. The body
limit, Content-Encoding and media type are read once for every route by serving/hotpath.py (`Call`)."""
from __future__ import annotations

from pathlib import Path

from lstm_onnx.runtimes.embed import range_problem
from lstm_onnx.serving.inputs import ApiError

RETRY_AFTER_S = "1"  # every refusal that asks for a retry: overload, session cap and quota, queue deadline,
# connection cap, body budget, parse backlog, shutdown, a replica gone


def retry_later(code: str, message: str, expected: str = "retry after the Retry-After header's seconds",
                status: int = 503) -> ApiError:
    """A refusal the client may retry: back-pressure, limits, shutdown."""
    return ApiError(status, code, message, expected, {"Retry-After": RETRY_AFTER_S})


def overloaded(message: str) -> ApiError:
    return retry_later("overloaded", message)


SHUTTING_DOWN = retry_later("shutting_down", "the server is shutting down", "retry on a running server")
NOT_STATEFUL = ApiError(409, "not_stateful", "this model has no h0/c0 inputs, so it cannot stream",
                        "a model exported with --stateful")


def check_sequence(stateful: bool, xs: list) -> None:
    """What a v2 sequence request must be on every backend: a model with state, one stream."""
    if not stateful:
        raise ApiError(400, "bad_request", "this model has no h0/c0 inputs, so it takes no sequence_id",
                       "a model exported with --stateful")
    if len(xs) != 1:
        raise ApiError(400, "bad_request", f"a sequence request carries one stream, got a batch of {len(xs)}",
                       "x shaped [1, steps, F]")


def model_name(settings) -> str:
    """The model's name where a protocol names it (v2 routes, gRPC)."""
    return settings.model_name or Path(settings.model).stem or "lstm"


def y_width(predictor) -> int:
    """The output's last dimension, -1 where the graph leaves it symbolic."""
    out = predictor.session.get_outputs()[predictor.output_names.index("y")].shape
    return out[-1] if isinstance(out[-1], int) else -1


def model_facts(predictor, batching: dict, machine: dict) -> dict:
    """What the handlers need of the model, the same on every backend (Ray's ingress gets it from a replica)."""
    p = predictor
    return {"num_features": p.num_features, "stateful": p.stateful, "head": p.head,
            "num_states": p.num_states if p.stateful else None,
            "hidden_size": p.hidden_size if p.stateful else None, "lengths_input": p.has_lengths,
            "meta": {k: p.meta.get(k) for k in ("form", "version", "opset", "feature_names", "target_names")},
            "safe_abs": p.safe_abs, "batching": batching, "providers": p.session.get_providers(),
            "machine": machine, "y_width": y_width(p)}


def model_info(facts: dict, settings, limits, **extra) -> dict:
    """GET /v1/model from the model's facts, on every backend: `limits` names the settings it reports, `extra`
    what only that backend knows."""
    return {"path": settings.model, **facts["meta"], "head": facts["head"], "num_features": facts["num_features"],
            "stateful": facts["stateful"], "lengths_input": facts["lengths_input"], "batching": facts["batching"],
            "providers": facts["providers"], "machine": facts["machine"], **extra,
            "limits": {k: getattr(settings, k) for k in limits}}


class RequestCore:
    """The interface; a backend sets `settings`, `name`, `extensions` and implements the methods that raise."""

    settings = None
    name = "lstm"
    # the v2 extensions the backend offers; a route with `needs` is mounted only where its extension is here
    extensions: tuple[str, ...] = ("binary_tensor_data",)
    _facts: dict | None = None
    memo: dict  # what a handler computes once per server (the Triton model config)

    async def facts(self) -> dict:
        """model_facts() of the served model."""
        raise NotImplementedError

    async def parse(self, parse, *args):
        """parse(*args), off the event loop where the backend has a place for it."""
        return parse(*args)

    def check_range(self, x, where: str, largest: float | None = None) -> None:
        """Per request, before batching: one request's overflow must not fail its batch-mates. After facts().
        `largest`: max |x| where decoding already measured it (v2 binary FP32), which spares a pass over x."""
        bound = self._facts["safe_abs"]
        if bound is None or (largest is not None and largest <= bound):
            return
        problem = range_problem(x, bound)
        if problem:
            raise ApiError(422, "out_of_range", f"{where}: {problem}", "values the model can normalize")

    async def require_stateful(self) -> dict:
        facts = await self.facts()
        if not facts["stateful"]:
            raise NOT_STATEFUL
        return facts

    async def run(self, xs: list) -> list[dict]:
        """Raw x [S, F] per sequence -> {"y", ...} per sequence, batched with other requests'; 503 when full."""
        raise NotImplementedError

    async def stream(self, sid: str):
        """The v1 stream `sid` (409 for a model without state, 404 for an unknown one)."""
        raise NotImplementedError

    async def open_stream(self, client: str = "") -> dict:
        """A new v1 stream for `client` (Call.client: its peer address): the POST /v1/sessions reply."""
        raise NotImplementedError

    async def step_stream(self, stream, x) -> tuple[dict, dict]:
        """Run x on from the stream's state: (result, the reply's fields besides "outputs")."""
        raise NotImplementedError

    async def end_stream(self, sid: str) -> None:
        raise NotImplementedError

    async def sequence_step(self, sequence: tuple, xs: list, client: str = "") -> list[dict]:
        """A v2 sequence request: (key, start, end) from v2_protocol.sequence_of, one stream in xs, from `client`
        (as in open_stream)."""
        raise NotImplementedError

    def for_stream(self) -> "RequestCore":
        """The core one gRPC stream (ModelStreamInfer) uses for its life: a backend whose requests have no
        affinity keeps that stream's sequences in it."""
        return self

    async def not_ready(self) -> ApiError | None:
        raise NotImplementedError

    def load(self) -> dict:
        """What a ready probe reports besides its status."""
        return {}

    def reply_headers(self, results: list[dict]) -> dict:
        """Headers a reply carries about the runs behind it."""
        return {}

    async def model_info(self) -> dict:
        """GET /v1/model."""
        raise NotImplementedError

    def stats(self, name: str, version: str) -> dict:
        """Triton's statistics of the model (extension "statistics")."""
        raise NotImplementedError
