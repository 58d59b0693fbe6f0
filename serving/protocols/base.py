"""What a protocol is made of: its routes, each a handler over the request core, and its error shape; and the
router that finds a route for a path, or the error shape for any path, across every registered protocol.

A handler is `async (core, call) -> payload | Reply`: it reads the request through `call`, does its work through
`core` (serving/request_core.py: checks, runs, sessions) and never knows which server or backend it runs on.
A payload is a dict (sent as JSON) or bytes (application/octet-stream)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable

from lstm_onnx.serving.inputs import ApiError


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    path: str  # a template: "/v1/sessions/{sid}/step"; a {param} is one non-empty path segment
    handler: Callable
    hot: bool = False  # answered in front of FastAPI's middleware stack (serving/hotpath.py)
    status: int = 200
    needs: str = ""  # an extension the core must offer (RequestCore.extensions) for the route to be mounted
    in_schema: bool = True  # in /openapi.json


@dataclass(frozen=True)
class Protocol:
    name: str
    prefix: str  # the paths it owns: prefix itself and prefix + "/..."; "" owns every path no other claims
    error_body: Callable[[ApiError], dict]
    routes: tuple[Route, ...]


@dataclass
class Reply:
    payload: object
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass(slots=True)
class Call:
    """One request as a handler sees it."""

    method: str
    params: dict  # the route's path parameters
    headers: list  # ASGI's: (lower-case name, value) bytes pairs
    media: str  # the Content-Type without parameters, lower case ("" when absent)
    read: Callable[[], Awaitable[bytes]]  # the body, within the body limit and with its Content-Encoding undone
    client: str = ""  # the peer's address (never X-Forwarded-For, which a client can forge): the session quota's key

    async def body(self) -> bytes:
        return await self.read()


MAX_SEEN = 1024
MAX_SEEN_PATH = 256  # characters; with MAX_SEEN, what the remembered matches can hold is bounded (~0.5 MB)


class Router:
    """(path) -> (route, params) for every route of `protocols` whose extension `extensions` offers, and the
    error shape of the protocol that owns a path. Fixed paths are one dict lookup; templates are grouped by
    segment count, so a match compares a few literal segments at most."""

    def __init__(self, protocols, extensions=()):
        self.protocols = tuple(protocols)
        self.routes = tuple(r for p in self.protocols for r in p.routes if not r.needs or r.needs in extensions)
        self.fixed, self.templates = {}, {}
        for route in self.routes:  # the first route for a path wins, as in FastAPI's order
            if "{" not in route.path:
                self.fixed.setdefault(route.path, route)
            else:
                parts = route.path.split("/")
                self.templates.setdefault(len(parts), []).append((parts, route))
        self.seen: dict[str, tuple[Route, dict]] = {}  # template matches by path, up to MAX_SEEN
        self.owners = sorted((p for p in self.protocols if p.prefix), key=lambda p: -len(p.prefix))
        self.default = next((p for p in self.protocols if not p.prefix), None)

    def match(self, path: str) -> tuple[Route, dict] | None:
        route = self.fixed.get(path)
        if route is not None:
            return route, {}
        # clients repeat their paths (one model's infer), and matching the templates was 5% of a v2 infer's
        # server time (py-spy, 64 clients)
        found = self.seen.get(path)
        if found is None:
            found = self._template(path)
            if found is None:
                return None
            if len(path) <= MAX_SEEN_PATH:  # a path may be as long as the head limit: those are not kept
                if len(self.seen) >= MAX_SEEN:  # session ids make paths unbounded: refilled by the paths in use
                    self.seen.clear()
                self.seen[path] = found
        return found[0], dict(found[1])  # a copy: a handler's changes stay out of the next request's params

    def _template(self, path: str) -> tuple[Route, dict] | None:
        parts = path.split("/")
        for template, route in self.templates.get(len(parts), ()):
            params = {}
            for want, got in zip(template, parts):
                if want[:1] == "{":
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return route, params
        return None

    def protocol_of(self, path: str) -> Protocol | None:
        for p in self.owners:
            if path == p.prefix or path.startswith(p.prefix + "/"):
                return p
        return self.default

    def error_body(self, exc: ApiError, path: str) -> dict:
        """`exc` in the error shape of the protocol `path` speaks (ApiError.body where none claims it)."""
        owner = self.protocol_of(path)
        return owner.error_body(exc) if owner is not None else exc.body()
