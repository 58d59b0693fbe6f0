"""Streaming sessions: the server holds each stream's h/c between steps, with an idle TTL, a cap, and a quota per
client (its peer address), so that one client cannot take every session."""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import numpy as np


class SessionLimit(RuntimeError):
    pass


class ClientSessionLimit(SessionLimit):
    """The client holds its quota of open sessions; others may still open theirs."""


class UnknownSession(KeyError):
    pass


class SessionOwned(RuntimeError):
    """The id names a session another client holds: v2 sequence ids are chosen by clients, and small integers
    are easy to guess, so one client must not restart, continue or end another's."""


@dataclass
class Session:
    id: str
    h: np.ndarray  # [L, H]
    c: np.ndarray
    last_used: float
    steps: int = 0
    client: str = ""  # who opened it, for the per-client quota
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one step at a time per stream


class SessionStore:
    def __init__(self, num_states: int, hidden: int, ttl_s: float, max_sessions: int, clock=time.monotonic,
                 max_per_client: int | None = None):
        self.shape = (num_states, hidden)
        self.ttl, self.max_sessions, self.clock = ttl_s, max_sessions, clock
        self.max_per_client = max_per_client if max_per_client is not None else max_sessions
        self.sessions: dict[str, Session] = {}
        self.per_client: dict[str, int] = {}

    def _drop(self, sid: str) -> None:
        client = self.sessions.pop(sid).client
        left = self.per_client[client] - 1
        if left:
            self.per_client[client] = left
        else:
            del self.per_client[client]

    def __len__(self) -> int:
        return len(self.sessions)

    def sweep(self) -> int:
        """Drop sessions idle longer than the TTL; returns how many went."""
        now = self.clock()
        expired = [sid for sid, s in self.sessions.items() if now - s.last_used > self.ttl]
        for sid in expired:
            self._drop(sid)
        return len(expired)

    def create(self, sid: str | None = None, client: str = "") -> Session:
        """A new session with zero state for `client`, under `sid` if given (one of the same client's already
        there under it is replaced; a refused restart leaves it in place)."""
        self.sweep()
        old = self.sessions.get(sid) if sid is not None else None
        if old is not None and old.client != client:
            raise SessionOwned(sid)
        if self.per_client.get(client, 0) - (old is not None) >= self.max_per_client:
            raise ClientSessionLimit(f"this client ({client or 'unknown address'}) holds {self.max_per_client} "
                                     f"open sessions, its quota; end finished ones or wait for idle ones to expire "
                                     f"({self.ttl:g} s)")
        if old is None and len(self.sessions) >= self.max_sessions:
            raise SessionLimit(f"session limit reached ({self.max_sessions} open); DELETE finished sessions "
                               f"or wait for idle ones to expire ({self.ttl:g} s)")
        if old is not None:
            self._drop(sid)
        sid = sid if sid is not None else secrets.token_urlsafe(12)
        session = Session(sid, np.zeros(self.shape, np.float32), np.zeros(self.shape, np.float32), self.clock(),
                          client=client)
        self.sessions[sid] = session
        self.per_client[client] = self.per_client.get(client, 0) + 1
        return session

    def get(self, sid: str, client: str | None = None) -> Session:
        """The open session `sid`; with `client`, only if that client holds it (SessionOwned otherwise)."""
        session = self.sessions.get(sid)
        if session is None or self.clock() - session.last_used > self.ttl:
            if session is not None:
                self._drop(sid)
            raise UnknownSession(sid)
        if client is not None and session.client != client:
            raise SessionOwned(sid)
        session.last_used = self.clock()
        return session

    def delete(self, sid: str, session: Session | None = None) -> None:
        """Drop `sid`; with `session`, only if `sid` still names that one (a request that ends a stream must not
        drop a stream restarted under the same id while it ran)."""
        stored = self.sessions.get(sid)
        if stored is None or (session is not None and stored is not session):
            raise UnknownSession(sid)
        self._drop(sid)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(max(min(self.ttl / 4, 30.0), 0.05))
            self.sweep()
