"""Per-model inference statistics in the shape of Triton's statistics extension (/v2/models/{m}/stats):
requests that succeeded or failed with their time, the time sequences queued for a batch and the time runs
computed, and each batch size's runs. Durations are nanoseconds; counts cover every protocol (v1 and v2)."""
from __future__ import annotations

import time
from collections import defaultdict


class Duration:
    __slots__ = ("count", "ns")

    def __init__(self):
        self.count = self.ns = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def json(self) -> dict:
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
              "cache_miss")

    def __init__(self):
        self.stages = {name: Duration() for name in self.STAGES}
        self.batches: dict[int, Duration] = defaultdict(Duration)
        self.inference_count = self.execution_count = 0
        self.last_inference_ms = 0

    def request(self, sequences: int, ns: int, ok: bool) -> None:
        """A request that ran `sequences` sequences (or failed) in `ns`."""
        self.stages["success" if ok else "fail"].add(ns)
        if ok:
            self.inference_count += sequences
            self.last_inference_ms = time.time_ns() // 1_000_000

    def run(self, batch: int, queued_ns: int, compute_ns: int) -> None:
        """One model run of `batch` sequences, which waited `queued_ns` in all and computed for `compute_ns`."""
        self.execution_count += 1
        self.stages["queue"].add(queued_ns, batch)
        self.stages["compute_infer"].add(compute_ns, batch)
        self.batches[batch].add(compute_ns)

    def json(self, name: str, version: str) -> dict:
        """One entry of Triton's model_stats list."""
        empty = Duration().json()
        return {"name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": self.execution_count,
                "inference_stats": {k: v.json() for k, v in self.stages.items()},
                "batch_stats": [{"batch_size": size, "compute_input": empty, "compute_infer": d.json(),
                                 "compute_output": empty} for size, d in sorted(self.batches.items())]}
