"""The parse process's backlog is bounded: beyond max_queue big bodies waiting, the next is refused (503)."""
from __future__ import annotations

import asyncio
import time

from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.parse_pool import BIG_BODY_BYTES, ParsePool


def slow_len(raw: bytes) -> int:
    time.sleep(0.3)
    return len(raw)


def test_big_bodies_past_the_parse_queue_are_503():
    """Issue 21: the parse-process backlog was unbounded."""
    big = b" " * (BIG_BODY_BYTES + 1)

    async def go():
        pool = ParsePool(max_queue=2)
        try:
            return await asyncio.gather(*(pool.run(slow_len, big) for _ in range(3)), return_exceptions=True)
        finally:
            pool.close()

    results = asyncio.run(go())
    assert results[:2] == [len(big)] * 2, results
    assert isinstance(results[2], ApiError) and results[2].status == 503, results[2]
    assert results[2].code == "parse_queue_full" and "Retry-After" in results[2].headers


def test_small_bodies_parse_on_the_loop_whatever_the_queue():
    async def go():
        pool = ParsePool(max_queue=1)
        return await asyncio.gather(*(pool.run(len, b"x" * 10) for _ in range(5)))

    assert asyncio.run(go()) == [10] * 5

