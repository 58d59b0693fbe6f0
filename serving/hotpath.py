"""The protocols' hot routes as plain ASGI, answered in front of FastAPI, and what every route reads a request
with: the body within its limit and Content-Encoding, the media type, and replies with optional compression.

Under load the server's one Python thread is the bottleneck, and a py-spy profile at 64 clients put a third
of its time in the framework's layers (error middleware, telemetry, body limit, exception middleware, exit
stack, router, Request) around /v1/predict and the session step. The hot routes (Route.hot) parse and check their
own bodies and shape their own errors, so they skip those layers; every other route stays a FastAPI route.
"""
from __future__ import annotations

import asyncio
import json
import logging
import zlib

from lstm_onnx.serving.inputs import ApiError, orjson
from lstm_onnx.serving.protocols.base import Call, Reply
from lstm_onnx.serving.request_core import SHUTTING_DOWN

log = logging.getLogger("uvicorn.error")


def dumps(payload: dict) -> bytes:
    return orjson.dumps(payload) if orjson is not None else json.dumps(payload).encode()


async def respond(send, status: int, payload, headers: dict | None = None, encoding="") -> None:
    """`payload`: a dict sent as JSON, or bytes sent as they are (application/octet-stream); `encoding`: gzip or
    deflate to compress the body with (see accepted_encoding), "" for none, or a function giving it, called only
    for a body long enough to compress."""
    body, media = _encoded(payload)
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


def encoded(payload) -> tuple[bytes, bytes]:
    """(body, media type): bytes go as they are, anything else as JSON."""
    body, media = _encoded(payload)
    return body, media[1]


def _encoded(payload) -> tuple[bytes, tuple]:
    return (payload, OCTET_STREAM) if isinstance(payload, bytes) else (dumps(payload), JSON)


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


def call_of(scope, receive, params: dict, limit: int) -> Call:
    return Call(scope["method"], params, scope["headers"], media_type(scope),
                lambda: read_body(scope, receive, limit), (scope.get("client") or ("",))[0])


async def answer(router, core, scope, receive, route, params: dict, limit: int) -> tuple | None:
    """(status, payload, headers) for a request that `router` matched to `route`, errors in the shape of the
    protocol that owns the path; None when the client went away. Any server, any backend."""
    shape = lambda exc: router.error_body(exc, scope["path"])  # noqa: E731
    try:
        if scope["method"] not in route.methods:
            allowed = ", ".join(route.methods)
            raise ApiError(405, "method_not_allowed", f"{scope['method']} is not allowed on {route.path}", allowed,
                           {"Allow": allowed})
        reply = await route.handler(core, call_of(scope, receive, params, limit))
        if not isinstance(reply, Reply):
            return route.status, reply, None
        return reply.status, reply.payload, reply.headers
    except ApiError as exc:
        return exc.status, shape(exc), exc.headers
    except Disconnected:
        return None
    except asyncio.CancelledError:  # uvicorn cancels what still runs when the shutdown grace is over
        return 503, shape(SHUTTING_DOWN), SHUTTING_DOWN.headers
    except Exception as exc:  # noqa: BLE001 - any bug becomes a JSON 500, and the log keeps the traceback
        log.exception("%s %s failed", scope["method"], scope["path"])
        return 500, shape(ApiError(500, "internal", f"{type(exc).__name__}: {exc}")), None


class HotRoutes:
    """The router's hot routes over `core`, counted in `metrics` under their route template."""

    def __init__(self, router, core, metrics, max_body_bytes: int):
        self.router, self.core, self.metrics, self.limit = router, core, metrics, max_body_bytes

    def match(self, path: str) -> tuple | None:
        found = self.router.match(path)
        return found if found is not None and found[0].hot else None

    async def __call__(self, scope, receive, send, route, params: dict) -> None:
        start, status = self.metrics.started(), 499  # nginx's "client closed request": counted, not answered
        try:
            reply = await answer(self.router, self.core, scope, receive, route, params, self.limit)
            if reply is not None:
                status = reply[0]
                await respond(send, *reply, lambda: accepted_encoding(scope))
        except BaseException:
            status = 500  # the send itself failed; the ASGI server closes the connection and logs it
            raise
        finally:
            self.metrics.finished(start, route.path, scope["method"], status)
