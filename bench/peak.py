"""The GEMM peak that "% of peak" divides by: picked from timed GEMMs, then pooled over one run's workers.

A worker times several GEMM shapes (the LSTM's own and a large square one) on each of its routes; its peak is
the fastest single run of any of them. The run's peak for a runtime, provider and thread count is the highest
worker peak, so a worker slowed by a burst of load does not lower it; the spread of the worker peaks and of the
winning shape's repeats says how stable that figure is.
"""
from __future__ import annotations

import numpy as np


def shape_label(shape) -> str:
    m, k, n = shape
    return f"{m}x{k}x{n}"


def rate(shape, route: str, times_ms: list[float]) -> dict:
    """GFLOP/s of each timed run of one [m, k] x [k, n] GEMM: max, median and min over the repeats."""
    m, k, n = shape
    gflops = 2.0 * m * k * n / (np.asarray(times_ms, dtype=float) * 1e6)
    return {"shape": shape_label(shape), "route": route, "gflops": float(gflops.max()),
            "spread": _spread(gflops)}


def best(rates: list[dict]) -> dict | None:
    """The fastest of several `rate()` results (None if there are none)."""
    return max(rates, key=lambda r: r["gflops"], default=None)


def peak_key(runtime: str, provider: str, threads: int) -> str:
    return f"{runtime}-{provider} t{threads}"


def run_peaks(workers: list[tuple[str, dict | None]]) -> dict[str, dict]:
    """{key: peak} from (key, worker peak) pairs: the highest worker peak, with the spread over the workers."""
    by_key: dict[str, list[dict]] = {}
    for k, peak in workers:
        if peak:
            by_key.setdefault(k, []).append(peak)
    out = {}
    for k, peaks in by_key.items():
        top = best(peaks)
        out[k] = dict(top, workers=_spread([p["gflops"] for p in peaks]))
    return out


def apply(rows, peaks: dict[str, dict]) -> None:
    """Set each row's GEMM peak to its run peak, its % of that peak, and flag rows above 100% (peak too low)."""
    for row in rows:
        peak = peaks.get(peak_key(row.runtime, row.provider, row.threads))
        row.gemm_gflops = peak["gflops"] if peak else None
        if row.gflops is None or not row.gemm_gflops:
            row.pct_of_gemm_peak = None
            continue
        row.pct_of_gemm_peak = 100.0 * row.gflops / row.gemm_gflops
        row.peak_exceeded = row.pct_of_gemm_peak > 100.0


def _spread(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max()), "n": int(a.size)}
