"""Our own REST protocol (/v1, and the /healthz and /readyz probes): predict, streaming sessions, model info.
Bodies are JSON or .npy (serving/bodies.py); errors are ApiError.body(): {"error": {"code", "message", ...}}."""
from __future__ import annotations

from lstm_onnx.serving.bodies import predict_arrays, step_array
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.protocols.base import Protocol, Reply, Route

PREDICT, STEP = "/v1/predict", "/v1/sessions/{sid}/step"


async def predict(core, call):
    facts, s = await core.facts(), core.settings
    xs = await core.parse(predict_arrays, await call.body(), call.media, facts["num_features"], s.max_items,
                          s.max_seq_len)
    for k, x in enumerate(xs):
        core.check_range(x, f"inputs[{k}]")
    results = await core.run(xs)
    return Reply({"outputs": [r["y"].tolist() for r in results]}, headers=core.reply_headers(results))


async def step(core, call):
    stream = await core.stream(call.params["sid"])
    facts = await core.facts()
    x = await core.parse(step_array, await call.body(), call.media, facts["num_features"], core.settings.max_seq_len)
    core.check_range(x, "inputs")
    result, fields = await core.step_stream(stream, x)
    return Reply({"outputs": result["y"].tolist(), **fields}, headers=core.reply_headers([result]))


async def open_session(core, call):
    return await core.open_stream(call.client)


async def end_session(core, call):
    sid = call.params["sid"]
    await core.end_stream(sid)
    return {"deleted": sid}


async def model(core, call):
    return await core.model_info()


async def healthz(core, call):
    return {"status": "ok"}


async def readyz(core, call):
    problem = await core.not_ready()
    if problem is not None:
        return Reply({"status": "not ready", "reason": problem.message, **problem.body()}, problem.status,
                     problem.headers)
    return {"status": "ready", **core.load()}


PROBE = ("GET", "HEAD")  # probes that only read the status
PROTOCOL = Protocol("v1", "", ApiError.body, (
    Route(("POST",), PREDICT, predict, hot=True),
    Route(("POST",), STEP, step, hot=True),
    Route(("POST",), "/v1/sessions", open_session, status=201),
    Route(("DELETE",), "/v1/sessions/{sid}", end_session),
    Route(("GET",), "/v1/model", model),
    Route(PROBE, "/healthz", healthz),
    Route(PROBE, "/readyz", readyz),
))
