"""Big request bodies are parsed in a child process, so that /healthz and small requests keep the event loop.

Parsing a 4 MB JSON body (orjson, then the float conversion) takes ~100 ms of the GIL. In a thread of the
server's process it still starves the loop (each loop wake-up waits for the GIL behind it): 8 concurrent 4 MB
bodies stalled /healthz for 531 ms on the loop and about as long from a thread. A process has its own GIL;
the loop only hands it the bytes and gets arrays back.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from lstm_onnx.serving.request_core import retry_later

BIG_BODY_BYTES = 64 << 10  # bodies up to this parse on the loop (about 1 ms); the child costs ~1 ms a trip
log = logging.getLogger("uvicorn.error")


def _ignore_sigint() -> None:  # Ctrl-C reaches the whole process group; the server stops the child itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParsePool:
    """`max_queue`: big bodies waiting for or in the parse process; one more is refused (503), since its wait
    would only grow with the backlog while its bytes stay in the server."""

    def __init__(self, max_queue: int = 32, on_refused=None):
        self.pool: ProcessPoolExecutor | None = None  # started with the first big body
        self.max_queue, self.queued = max_queue, 0
        self.on_refused = on_refused or (lambda: None)

    async def run(self, convert, raw: bytes, *args):
        """convert(raw, *args): on the event loop for small bodies, in the parse process for big ones."""
        if len(raw) <= BIG_BODY_BYTES:
            return convert(raw, *args)
        if self.queued >= self.max_queue:
            self.on_refused()
            raise retry_later("parse_queue_full", f"{self.queued} big bodies are waiting to be parsed, the "
                              "server's limit")
        self.queued += 1
        try:
            return await self._parse(convert, raw, *args)
        finally:
            self.queued -= 1

    async def _parse(self, convert, raw: bytes, *args):
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, convert, raw, *args)
        except BrokenProcessPool:  # the child died (OOM killer?): a new one next time, this body here
            log.warning("the body parser process died; parsing this body in the server")
            self.pool = None
            return convert(raw, *args)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
