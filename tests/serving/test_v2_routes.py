"""The v2 sequence extension's bookkeeping, with the run held open: a request that ends a sequence must end
the sequence it ran on, not one restarted under the same id while it ran."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.sessions import SessionStore
from lstm_onnx.serving.app import Server
from tests.harness import record

pytestmark = pytest.mark.harness
KEY = "v2/int/7"


class HeldServer:
    """What Server.sequence_step uses of serving.app.Server; advance() waits until released."""

    def __init__(self):
        self.settings = SimpleNamespace(model_name="m", model="m.onnx", session_ttl_s=300.0)
        self.sessions = SessionStore(1, 2, ttl_s=300.0, max_sessions=8)
        self.release = None  # an asyncio.Event made inside the running loop

    sequence_step = Server.sequence_step

    def new_session(self, key, client=""):
        return self.sessions.create(key, client)

    async def advance(self, session, x):
        if self.release is not None:
            await self.release.wait()
        session.steps += len(x)
        return {"y": x[-1]}


def test_a_stale_sequence_end_does_not_close_a_restarted_sequence():
    async def scenario():
        srv = HeldServer()
        v2 = srv
        x = np.ones((3, 2), np.float32)
        await v2.sequence_step((KEY, True, False), [x])  # started before
        srv.release = asyncio.Event()
        ending = asyncio.create_task(v2.sequence_step((KEY, False, True), [x]))  # A: the last chunk, held
        await asyncio.sleep(0)
        restart = asyncio.create_task(v2.sequence_step((KEY, True, False), [x]))  # B: restarts the id meanwhile
        await asyncio.sleep(0)
        srv.release.set()
        await asyncio.gather(ending, restart)
        try:  # C continues B's sequence
            await v2.sequence_step((KEY, False, False), [x])
            return None
        except ApiError as exc:
            return exc.message

    problem = asyncio.run(asyncio.wait_for(scenario(), 10))
    record("v2", problem is None, f"continuing a restarted sequence after a stale end: {problem}")
    assert problem is None, problem
