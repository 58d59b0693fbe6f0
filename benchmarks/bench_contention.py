"""Do the default thread settings hold when something else runs? Default against every explicit setting.

Two workloads: `train` of the built-in task (a few epochs) and ONNX Runtime CPU inference of a native LSTM
with P at batch 64 x 100 steps (I 64, H 256). Settings: the default (what the CLI does: core/threads.py) and
1 and 2 threads with active and passive waiting. Conditions: idle, and busy with one competing process that
spins on one core. Each setting runs in its own process, because OpenMP reads its wait policy when it loads;
the settings take turns, round by round, so that other load on the machine hits each alike. Printed: the
median over rounds of each setting's ms, and default / best for each of the four (workload, condition)
pairs, with the machine. The goal is default / best <= 1.3x everywhere.

    python -m benchmarks.bench_contention [--rounds 3] [--repeats 2] [--epochs 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"default": (None, None), "1 thr active": (1, "ACTIVE"), "1 thr passive": (1, "PASSIVE"),
            "2 thr active": (2, "ACTIVE"), "2 thr passive": (2, "PASSIVE")}
CONDITIONS = ("idle", "busy (1 spinning process)")
WORKLOADS = ("train", "ort 64x100")
GOAL = 1.3
BUDGET_S = 20.0  # a setting that collapses (2 spinning threads next to a busy process) stops repeating after this


def _child_train(threads: int, epochs: int, repeats: int) -> list[float]:
    from lstm_onnx.pipeline.config import RunConfig
    from lstm_onnx.pipeline.train import train

    times, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats + 1):  # the first run warms up (and measures the kernel once, if not cached)
            if times and time.perf_counter() - start > BUDGET_S:
                break
            config = RunConfig()
            config.train.epochs, config.train.threads = epochs, threads
            t0 = time.perf_counter()
            train(config, Path(tmp) / "m.pt", progress=False, log=lambda *_: None)
            if k:
                times.append((time.perf_counter() - t0) * 1e3)
    return times


def _child_ort(threads: int, repeats: int) -> list[float]:
    import numpy as np

    from lstm_onnx.runtimes.doctor import peephole_lstm_model
    from lstm_onnx.runtimes.session import open_session

    session = open_session(peephole_lstm_model(hidden=256, inputs=64), "cpu", threads=threads or None,
                           check_placement=False).session
    x = np.random.default_rng(0).standard_normal((100, 64, 64)).astype(np.float32)
    times, start = [], time.perf_counter()
    for k in range(3 * repeats + 2):
        if times and time.perf_counter() - start > BUDGET_S:
            break
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        if k >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def child(workload: str, threads: int, epochs: int, repeats: int) -> None:
    import lstm_onnx.cli  # noqa: F401 - the CLI's entry: the default wait policy, before torch/onnxruntime load

    times = _child_train(threads, epochs, repeats) if workload == "train" else _child_ort(threads, repeats)
    print(json.dumps({"ms": statistics.median(times)}))


def run_setting(workload: str, setting: str, epochs: int, repeats: int) -> float:
    threads, policy = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, "-m", "benchmarks.bench_contention", "--child", workload, "--threads",
           str(threads or 0), "--epochs", str(epochs), "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ms"]


def measure(epochs: int, repeats: int, rounds: int, workloads=WORKLOADS) -> dict:
    """{"workload / condition": {setting: median ms over rounds}}."""
    results: dict = {}
    for condition in CONDITIONS:
        spinner = None
        if condition != "idle":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            samples = {w: {s: [] for s in SETTINGS} for w in workloads}
            for _ in range(rounds):
                for workload in workloads:
                    for setting in SETTINGS:
                        samples[workload][setting].append(run_setting(workload, setting, epochs, repeats))
            for workload in workloads:
                results[f"{workload} / {condition}"] = {s: statistics.median(v) for s, v in samples[workload].items()}
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2, help="train's epochs per run")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per setting and round (median); ORT: 3x this")
    ap.add_argument("--rounds", type=int, default=3, help="turns each setting takes (median over them)")
    ap.add_argument("--workload", action="append", choices=WORKLOADS, help="only this one (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.threads, args.epochs, args.repeats)
        return 0
    from lstm_onnx.core import threads
    from lstm_onnx.core.machine import fingerprint, summary

    threads.apply_wait_policy()
    machine = fingerprint()
    results = measure(args.epochs, args.repeats, args.rounds, args.workload or WORKLOADS)
    print(summary(machine))
    print(f"median ms; default = {threads.threads()} thread(s), OMP_WAIT_POLICY={threads.DEFAULT_WAIT}, onnxruntime "
          f"workers that yield; train: {args.epochs} epochs of the built-in task; median of {args.rounds} rounds")
    head = ["workload / condition", *SETTINGS, "default / best"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    worst = 0.0
    for key, ms in results.items():
        ratio = ms["default"] / min(ms.values())
        worst = max(worst, ratio)
        print(f"| {key} | " + " | ".join(f"{v:.1f}" for v in ms.values()) + f" | {ratio:.2f}x |")
    print(f"worst default / best: {worst:.2f}x (goal <= {GOAL}x)")
    if args.json:
        from lstm_onnx.core.fileio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"machine": machine, "results": results, "worst_ratio": worst}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
