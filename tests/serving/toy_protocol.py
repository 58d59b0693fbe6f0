"""A toy protocol, to show what adding one takes: this module (its routes, handlers over the request core and its
error shape) and one line in the registry, serving/protocols/__init__.py's PROTOCOLS (the tests patch it in).

POST /toy/{name}/run  {"x": [[F numbers] per step]}  -> {"y": [...]}, a hot route
GET  /toy/{name}                                     -> {"model": name, "features": F}
Errors: {"toy_error": code, "status": status}."""
from __future__ import annotations

import numpy as np

from lstm_onnx.serving.inputs import ApiError, parse_json, sequence
from lstm_onnx.serving.protocols.base import Protocol, Reply, Route


def error_body(exc: ApiError) -> dict:
    return {"toy_error": exc.code, "status": exc.status}


def check_name(core, name: str) -> None:
    if name != core.name:
        raise ApiError(404, "no_such_model", f"no model {name!r}", core.name)


async def run(core, call):
    check_name(core, call.params["name"])
    facts = await core.facts()
    data = parse_json(await call.body())
    x = sequence(data.get("x"), facts["num_features"], core.settings.max_seq_len, "x", True)
    core.check_range(x, "x")
    (result,) = await core.run([x])
    return Reply({"y": np.asarray(result["y"]).tolist()}, headers=core.reply_headers([result]))


async def info(core, call):
    check_name(core, call.params["name"])
    return {"model": core.name, "features": (await core.facts())["num_features"]}


PROTOCOL = Protocol("toy", "/toy", error_body, (
    Route(("POST",), "/toy/{name}/run", run, hot=True),
    Route(("GET",), "/toy/{name}", info),
))
