"""How long `lstm-pipeline check-data` takes on a long CSV and on a wide one (goal: each within 30 s).

Generates, once, under --dir: long.csv (1,000,000 rows x 10 columns of random walks and noise) and wide.csv
(5 rows x 20,000 columns), then times the command end to end (a fresh process each run, imports included) and
prints the machine beside every figure. The times are wall-clock seconds, the median of --runs.

    python -m benchmarks.bench_data [--dir artifacts/bench_data] [--runs 1] [--only long|wide]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GOAL_S = 30.0
FILES = {"long": (1_000_000, 10), "wide": (5, 20_000)}  # (rows, columns)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " load %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} logical CPUs{load}"


def write_csv(path: Path, rows: int, columns: int, seed: int = 0) -> Path:
    """Random walks in even columns, noise in odd ones: nothing leaks, nothing is constant."""
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns))
    x[:, ::2] = np.cumsum(x[:, ::2], axis=0)
    tmp = path.with_suffix(".tmp")
    np.savetxt(tmp, x, fmt="%.6g", delimiter=",", header=",".join(f"c{j}" for j in range(columns)), comments="")
    tmp.replace(path)
    return path


def time_check(path: Path) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (the child's user + system: less sensitive to a busy machine), exit code and
    last line of `lstm-pipeline check-data PATH` in a fresh process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lstm_onnx.cli", "check-data", str(path)],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    lines = (r.stdout + r.stderr).strip().splitlines()
    return seconds, cpu, r.returncode, lines[-1] if lines else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="artifacts/bench_data", help="where the generated CSVs are kept")
    ap.add_argument("--runs", type=int, default=1, help="timed runs per file (median)")
    ap.add_argument("--only", choices=sorted(FILES), action="append", help="time only this file (repeatable)")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    for name in args.only or list(FILES):
        rows, columns = FILES[name]
        path = write_csv(folder / f"{name}.csv", rows, columns)
        runs = [time_check(path) for _ in range(args.runs)]
        seconds, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        worst = max(worst, seconds)
        size = path.stat().st_size / 1e6
        print(f"check-data {name}.csv ({rows:,} rows x {columns:,} columns, {size:.0f} MB): {seconds:.1f} s wall, "
              f"{cpu:.1f} s CPU (goal {GOAL_S:.0f} s; exit {runs[-1][2]}: {runs[-1][3]}) on {machine()}")
    return 0 if worst <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
