"""Latency sampling: warm up (calls and time), then run for a minimum time (and count), report median and p99."""
from __future__ import annotations

import time

import numpy as np


def sample(fn, min_time: float = 0.3, min_iters: int = 5, max_iters: int = 2000, warmup: int = 2,
           warmup_time: float | None = None) -> list[float]:
    """Latencies of `fn()` in ms; `fn` must return only when its work is done (synchronize GPUs inside).

    Warm-up runs `warmup` calls and at least `warmup_time` seconds (default: a quarter of `min_time`), long
    enough for thread pools to spin up and caches and clocks to settle before anything is timed."""
    warmup_time = min_time / 4 if warmup_time is None else warmup_time
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_time:
        fn()
        done += 1
    times = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def summary(times_ms: list[float]) -> dict:
    a = np.asarray(times_ms)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "iters": int(a.size)}
