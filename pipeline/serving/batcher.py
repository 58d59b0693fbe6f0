"""Dynamic batching: sequences from concurrent requests are coalesced into one model run.

A batch closes at `max_batch` sequences or `max_wait_ms` after its first one, whichever comes first. The
queue is bounded: `submit` refuses (QueueFull) rather than let memory grow. Runs happen in a thread pool
of `workers` threads, so the event loop keeps accepting requests while onnxruntime computes.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class QueueFull(RuntimeError):
    pass


@dataclass
class Item:
    x: np.ndarray  # raw [S, F]
    state: tuple | None = None  # (h [L, H], c [L, H]) for a session step
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]


class Batcher:
    def __init__(self, predictor, max_batch: int, max_wait_ms: float, max_queue: int, workers: int,
                 on_batch=None):
        self.predictor = predictor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1e3, max_queue
        self.workers = workers
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="infer")
        self.tasks: list[asyncio.Task] = []

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    @property
    def running(self) -> bool:
        return bool(self.tasks) and not all(t.done() for t in self.tasks)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        """Finish what is queued, then stop the loops and the thread pool."""
        while self.queue.qsize():
            await asyncio.sleep(0.005)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.shutdown(wait=True)

    async def submit(self, items: list[Item]) -> list[dict]:
        """Queue every item or none; wait for all their results."""
        if self.queue.qsize() + len(items) > self.max_queue:
            raise QueueFull(f"queue full ({self.queue.qsize()} of {self.max_queue} sequences waiting)")
        loop = asyncio.get_running_loop()
        for item in items:
            item.future = loop.create_future()
            self.queue.put_nowait(item)
        return await asyncio.gather(*(item.future for item in items))

    async def _collect(self) -> list[Item]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [item for item in batch if not item.future.done()]  # skip callers that went away

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            self.on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self.pool, self.predictor.run_ragged,
                                                     [i.x for i in batch], [i.state for i in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)
