"""The OpenAPI document: FastAPI's, plus the hot routes (plain ASGI, so FastAPI cannot see them), the JSON error
shape on every refusal a route can give, and the bearer scheme when a token is set.

The request schemas are the server's own limits for the loaded model (feature count, sequence and step counts,
float32's range), so a body that matches them is answered 200 and one that does not is a 4xx.
"""
from __future__ import annotations

from fastapi.openapi.utils import get_openapi

from lstm_onnx.serving.auth import OPEN_PATHS
from lstm_onnx.serving.protocols.v1 import PREDICT, STEP
from lstm_onnx.serving.inputs import FLOAT32_ROUNDS_TO_INF
from lstm_onnx.serving.npy_body import MEDIA_TYPE as NPY

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "expected": {"type": "string"}}}}}
REASONS = {400: "Malformed body (JSON or .npy)", 401: "Missing or wrong bearer token", 404: "Unknown session",
           405: "Method not allowed", 409: "The model has no h0/c0 inputs", 413: "Body or batch over the limits",
           422: "Body well-formed but not the model's inputs", 429: "The client holds its quota of sessions",
           503: "Overloaded, not ready or shutting down"}
# What each route can refuse with (all in the ERROR shape); 401 is added everywhere but the probes with a token.
REFUSALS = {(PREDICT, "post"): (400, 405, 413, 422, 503),
            (STEP, "post"): (400, 404, 405, 409, 413, 422, 503),
            ("/v1/sessions", "post"): (409, 429, 503), ("/v1/sessions/{sid}", "delete"): (404, 409),
            ("/readyz", "get"): (503,)}


def _body(items: dict, npy_shape: str) -> dict:
    return {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {"inputs": items}}},
        NPY: {"schema": {"type": "string", "format": "binary",
                         "description": f"numpy.save of a float32/float64/int array shaped {npy_shape}"}}}}


def _ok(properties: dict) -> dict:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def hot_routes(num_features: int, max_items: int, max_steps: int, safe_abs: float | None = None) -> dict:
    """`safe_abs`: the largest |x| the model can normalize (Predictor.safe_abs); None: float32's range."""
    if safe_abs is None:
        bound = float(FLOAT32_ROUNDS_TO_INF)  # what rounds to a finite float32 is accepted
        number = {"type": "number", "exclusiveMinimum": -bound, "exclusiveMaximum": bound}
    else:
        number = {"type": "number", "minimum": -safe_abs, "maximum": safe_abs}
    step = {"type": "array", "minItems": num_features, "maxItems": num_features, "items": number}
    sequence = {"type": "array", "minItems": 1, "maxItems": max_steps, "items": step}
    batch = {"type": "array", "minItems": 1, "maxItems": max_items, "items": sequence}
    sid = [{"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        PREDICT: {"post": {"summary": "Predict", "operationId": "predict",
                           "description": "One output per sequence, in raw target units; sequences may differ "
                                          "in length and are batched with other requests'.",
                           "requestBody": _body(batch, "[sequences, steps, features]"),
                           "responses": _ok({"outputs": {"type": "array"}})}},
        STEP: {"post": {"summary": "Session step", "operationId": "session_step", "parameters": sid,
                        "description": "Runs the steps on from the session's h/c, which the server keeps.",
                        "requestBody": _body(sequence, "[steps, features]"),
                        "responses": _ok({"outputs": {"type": "array"}, "steps": {"type": "integer"}})}}}


def build(app, num_features: int, max_items: int, max_steps: int, token: bool, safe_abs: float | None = None) -> dict:
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema["paths"].update(hot_routes(num_features, max_items, max_steps, safe_abs))
    components = schema.setdefault("components", {})
    components.pop("schemas", None)  # FastAPI's validation-error models: no route takes validated parameters
    components["schemas"] = {"Error": ERROR}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            op["responses"].pop("422", None)
            codes = list(REFUSALS.get((path, method), ()))
            if token and path not in OPEN_PATHS:
                codes.append(401)
                op["security"] = [{"bearer": []}]
            for code in codes:
                op["responses"][str(code)] = {"description": REASONS[code], "content": error}
    return schema
