"""The two hot routes, predict and session step, as plain ASGI handlers answered in front of FastAPI.

Under load the server's one Python thread is the bottleneck, and a py-spy profile at 64 clients put a third
of its time in the framework's layers (error middleware, telemetry, body limit, exception middleware, exit
stack, router, Request) around these two routes. They parse and check their own bodies and shape their own
errors, so they skip those layers; every other route stays a normal FastAPI route.
"""
from __future__ import annotations

import asyncio
import json
import logging
import zlib

from lstm_onnx.serving.inputs import ApiError, orjson

log = logging.getLogger("uvicorn.error")

PREDICT, STEP = "/v1/predict", "/v1/sessions/{sid}/step"
V2_INFER = "/v2/models/{name}/infer"  # also /v2/models/{name}/versions/{version}/infer, as Triton takes it


def route_of(path: str) -> tuple[str, dict] | None:
    """(route template, path params) for the hot routes, None for any other path."""
    if path == PREDICT:
        return PREDICT, {}
    if path.startswith("/v1/sessions/") and path.endswith("/step"):
        sid = path[len("/v1/sessions/"):-len("/step")]
        if sid and "/" not in sid:
            return STEP, {"sid": sid}
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        name, versioned, version = path[len("/v2/models/"):-len("/infer")].partition("/versions/")
        if name and "/" not in name and "/" not in version and (version or not versioned):
            return V2_INFER, {"name": name, "version": version}
    return None


def dumps(payload: dict) -> bytes:
    return orjson.dumps(payload) if orjson is not None else json.dumps(payload).encode()


async def respond(send, status: int, payload, headers: dict | None = None, encoding="") -> None:
    """`payload`: a dict sent as JSON, or bytes sent as they are (application/octet-stream); `encoding`: gzip or
    deflate to compress the body with (see accepted_encoding), "" for none, or a function giving it, called only
    for a body long enough to compress."""
    if isinstance(payload, bytes):
        body, media = payload, OCTET_STREAM
    else:
        body, media = dumps(payload), JSON
    if len(body) >= COMPRESS_MIN_BYTES and (encoding := encoding() if callable(encoding) else encoding):
        body = compress(body, encoding)
        raw = [(b"content-encoding", encoding.encode()), media, (b"content-length", b"%d" % len(body))]
    else:
        raw = [media, (b"content-length", b"%d" % len(body))]
    if headers:
        raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


OCTET_STREAM, JSON = (b"content-type", b"application/octet-stream"), (b"content-type", b"application/json")


SHUT_DOWN = ApiError(503, "shutting_down", "the server stopped before this request finished",
                     "retry on a running server", {"Retry-After": "1"})


class Disconnected(Exception):
    """The client went away before its body arrived; nobody is left to answer."""


def media_type(scope) -> str:
    """The request's Content-Type without parameters, lower case ("" when absent)."""
    return header(scope, b"content-type").partition(";")[0].strip()


def header(scope, name: bytes) -> str:
    """A request header's value, lower case and stripped ("" when absent)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip().lower()
    return ""


# Below this a reply goes uncompressed whatever Accept-Encoding says: httpx and requests ask for gzip by default,
# and deflating a small JSON reply costs the server's one thread more than the bytes it saves.
COMPRESS_MIN_BYTES = 1024
# Content-Encoding -> zlib's wbits: gzip's wrapper, or zlib's (what HTTP's "deflate" means, and tritonclient sends)
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding undone; the size limit applies to what it inflates to."""
    if encoding in ("", "identity"):
        return raw
    if encoding not in ENCODINGS:
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported",
                       f"one of {', '.join(ENCODINGS)} or identity")
    inflate = zlib.decompressobj(ENCODINGS[encoding])
    try:
        body = inflate.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_encoding", f"the body is not {encoding} data ({exc})") from None
    if len(body) > limit:
        raise ApiError(413, "body_too_large", f"the body inflates to more than the limit {limit} bytes",
                       f"at most {limit} bytes once decompressed")
    if not inflate.eof or inflate.unused_data:
        raise ApiError(400, "bad_encoding", f"the {encoding} body is truncated or has bytes after its end")
    return body


def accepted_encoding(scope) -> str:
    """gzip or deflate where Accept-Encoding asks for one (q > 0), else "" (identity)."""
    offered = {}
    for part in header(scope, b"accept-encoding").split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip()[2:] if params.strip().startswith("q=") else "1"
        try:
            offered[name.strip()] = float(q)
        except ValueError:
            offered[name.strip()] = 0.0
    return next((name for name in ENCODINGS if offered.get(name, 0) > 0), "")


def compress(body: bytes, encoding: str) -> bytes:
    # level 1: most of the size for a fraction of the default level's CPU, which the server's one thread pays
    deflate = zlib.compressobj(1, zlib.DEFLATED, ENCODINGS[encoding])
    return deflate.compress(body) + deflate.flush()


async def read_body(scope, receive, limit: int) -> bytes:
    """The request body, refused (413) beyond `limit` bytes whether declared or streamed, or once inflated
    (Content-Encoding gzip or deflate)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ApiError(413, "body_too_large", f"body is {int(value)} bytes, more than the limit {limit}",
                           f"at most {limit} bytes")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"body is more than the limit {limit} bytes",
                           f"at most {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return decoded(chunks[0] if len(chunks) == 1 else b"".join(chunks), header(scope, b"content-encoding"), limit)


class HotRoutes:
    """handlers: route template -> async (body, params, media_type) -> payload or (payload, headers), where
    `await body()` reads the request body (a handler may refuse before reading it) and params["headers"] holds
    the request's ASGI headers. error_bodies: route -> ApiError -> payload, for routes whose protocol shapes
    errors otherwise than ApiError.body (the v2 routes)."""

    def __init__(self, handlers: dict, metrics, max_body_bytes: int, error_bodies: dict | None = None):
        self.handlers, self.metrics, self.limit = handlers, metrics, max_body_bytes
        self.error_bodies = error_bodies or {}

    async def __call__(self, scope, receive, send, route: str, params: dict) -> None:
        start, status = self.metrics.started(), 499  # nginx's "client closed request": counted, not answered
        try:
            reply = await self.answer(scope, receive, route, params)
            if reply is not None:
                status = reply[0]
                await respond(send, *reply, lambda: accepted_encoding(scope))
        except BaseException:
            status = 500  # the send itself failed; the ASGI server closes the connection and logs it
            raise
        finally:
            self.metrics.finished(start, route, scope["method"], status)

    async def answer(self, scope, receive, route: str, params: dict) -> tuple | None:
        """(status, payload, headers) to send, or None when the client went away."""
        shape = self.error_bodies.get(route, ApiError.body)
        try:
            if scope["method"] != "POST":
                raise ApiError(405, "method_not_allowed", f"{scope['method']} is not allowed on {route}", "POST",
                               {"Allow": "POST"})
            body = lambda: read_body(scope, receive, self.limit)  # noqa: E731
            params["headers"] = scope["headers"]
            reply = await self.handlers[route](body, params, media_type(scope))
            return (200, *reply) if isinstance(reply, tuple) else (200, reply, None)
        except ApiError as exc:
            return exc.status, shape(exc), exc.headers
        except Disconnected:
            return None
        except asyncio.CancelledError:  # uvicorn cancels what still runs when the shutdown grace is over
            return 503, shape(SHUT_DOWN), SHUT_DOWN.headers
        except Exception as exc:  # noqa: BLE001 - any bug becomes a JSON 500, and the log keeps the traceback
            log.exception("%s %s failed", scope["method"], scope["path"])
            return 500, shape(ApiError(500, "internal", f"{type(exc).__name__}: {exc}")), None
