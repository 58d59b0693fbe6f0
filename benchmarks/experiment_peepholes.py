"""Do peepholes matter? Train peephole and plain LSTMs on a timing task and on real data, over several seeds.

    python benchmarks/experiment_peepholes.py --out artifacts/peepholes [--seeds 3] [--jobs 2]

Every run uses one torch thread; `--jobs` runs go side by side. Each (task, variant, seed) is trained
from its shipped config (configs/*.toml) with the overrides in TASKS, then scored on its test split.
Writes results.json (every run), results.md (the table) and peepholes.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# task -> (config file, overrides, headline metric, higher is better, success threshold or None)
TASKS = {
    "spike_timing": ("configs/spike_timing.toml", {}, "sequence_accuracy", True, 0.9),
    "co2": ("configs/co2.toml", {}, "rmse", False, None),
    "spike_delay": ("configs/spike_delay.toml", {}, "accuracy", True, 0.9),
}
DEFAULT_TASKS = ["spike_timing", "co2"]
VARIANTS = {"peephole": True, "plain": False}


def run_one(task: str, variant: str, seed: int) -> dict:
    import torch

    from lstm_onnx.pipeline import fastpath
    from lstm_onnx.pipeline.config import load_run_config
    from lstm_onnx.pipeline.data import load_dataset
    from lstm_onnx.pipeline.metrics import task_metrics
    from lstm_onnx.pipeline.train import predict, train

    torch.set_num_threads(1)
    path, overrides, metric, _, _ = TASKS[task]
    config = load_run_config(ROOT / path)
    for section, values in overrides.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    config.model.peephole = VARIANTS[variant]
    config.train.seed = config.data.seed = seed
    config.train.threads = 1
    start = time.perf_counter()
    data = load_dataset(config.data)
    ckpt = train(config, None, progress=False, log=lambda *_: None, dataset=data)
    m = ckpt.metrics
    # the same metric on the validation split: sequences of the training length (test ones may be longer)
    val = task_metrics(predict(ckpt.build_model(), data.val.x), data.val, config, data.normalization,
                       data.feature_names, data.target_names)
    return {"task": task, "variant": variant, "seed": seed, "metric": metric, "value": m["test"][metric],
            "val_value": val[metric],
            "peephole_share": peephole_shares(ckpt, data.val.x),
            "kernel": "compiled" if fastpath.available() else "python",
            "test": {k: v for k, v in m["test"].items() if k != "per_target"},
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
            "train_seconds": m["train_seconds"], "wall_seconds": time.perf_counter() - start}


def peephole_shares(ckpt, x, limit: int = 256) -> dict[str, float] | None:
    """Mean |p*c| / mean |pre-activation| per gate on (up to `limit`) validation windows, averaged over layers
    and directions (docs/gates.md); None for a plain LSTM."""
    if not ckpt.model_config.peephole:
        return None
    from lstm_onnx.pipeline.probe import torch_traces
    from lstm_onnx.runtimes.gate_stats import gate_report

    stats = gate_report(torch_traces(ckpt.state_dict, ckpt.model_config, x[:limit]), "torch").stats
    return {g: statistics.fmean(s.peephole_share for s in stats if s.gate == g) for g in ("i", "f", "o")}


def _share(row: dict) -> str:
    share = row.get("peephole_share")
    return " / ".join(f"{share[g]:.3f}" for g in ("i", "f", "o")) if share else "—"


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for task, (_, _, metric, higher, threshold) in TASKS.items():
        if not any(r["task"] == task for r in runs):
            continue
        for variant in VARIANTS:
            mine = [r for r in runs if r["task"] == task and r["variant"] == variant]
            if not mine:
                continue
            values = [r["value"] for r in mine]
            row = {"task": task, "variant": variant, "metric": metric, "seeds": len(mine),
                   "mean": mean_spread(values)[0], "std": mean_spread(values)[1],
                   "min": min(values), "max": max(values),
                   "train_seconds": mean_spread([r["train_seconds"] for r in mine]),
                   "epochs": mean_spread([r["epochs_run"] for r in mine])[0]}
            shares = [r["peephole_share"] for r in mine if r.get("peephole_share")]
            if shares:
                row["peephole_share"] = {g: statistics.fmean(sh[g] for sh in shares) for g in ("i", "f", "o")}
            if threshold is not None:
                ok = [(v >= threshold) if higher else (v <= threshold) for v in values]
                row["success"] = f"{sum(ok)}/{len(ok)}"
                val_ok = [(r["val_value"] >= threshold) if higher else (r["val_value"] <= threshold) for r in mine]
                row["val_success"] = f"{sum(val_ok)}/{len(val_ok)}"
                row["success_rule"] = f"{metric} {'>=' if higher else '<='} {threshold}"
            rows.append(row)
    return rows


def _success(row: dict) -> str:
    return f"{row['success']} ({row['val_success']})" if "success" in row else "—"


def table(rows: list[dict]) -> str:
    lines = ["| task | variant | test metric (mean ± sd over seeds) | min .. max | success: test (val) "
             "| train time, s | epochs | peephole share i / f / o |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ts = r["train_seconds"]
        lines.append(f"| {r['task']} | {r['variant']} | {r['metric']} {r['mean']:.4f} ± {r['std']:.4f} | "
                     f"{r['min']:.4f} .. {r['max']:.4f} | {_success(r)} | {ts[0]:.1f} ± {ts[1]:.1f} | "
                     f"{r['epochs']:.1f} | {_share(r)} |")
    rules = sorted({f"{r['task']}: {r['success_rule']}" for r in rows if "success_rule" in r})
    if rules:
        lines += ["", "Success: " + "; ".join(rules) + "."]
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import numpy as np

    from lstm_onnx.core.figures import pyplot as _pyplot
    from lstm_onnx.core.figures import save_figure

    plt = _pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = TASKS[task][2]
        for k, variant in enumerate(VARIANTS):
            values = [r["value"] for r in runs if r["task"] == task and r["variant"] == variant]
            ax.scatter(k + np.linspace(-0.15, 0.15, len(values)), values, alpha=0.7)  # spread: count the dots
            if values:
                ax.hlines(statistics.fmean(values), k - 0.2, k + 0.2, color="k")
        ax.set(xticks=range(len(VARIANTS)), xticklabels=list(VARIANTS), xlim=(-0.5, len(VARIANTS) - 0.5),
               title=task, ylabel=f"test {metric}")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="artifacts/peepholes")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=list(TASKS))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from lstm_onnx.core.fileio import atomic_path

    jobs = [(t, v, s) for t in args.tasks for s in range(args.seeds) for v in VARIANTS]
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(run_one, *zip(*jobs)):
            print(f"{r['task']:13s} {r['variant']:8s} seed {r['seed']}: {r['metric']} {r['value']:.4f} "
                  f"({r['train_seconds']:.0f}s, {r['epochs_run']} epochs)", flush=True)
            runs.append(r)
    wall = time.perf_counter() - start
    rows = summarize(runs)
    out = Path(args.out)
    kernels = sorted({r["kernel"] for r in runs})
    md = table(rows) + (f"\n\n{len(runs)} runs, {args.jobs} at a time, 1 thread each, training step: "
                        f"{' + '.join(kernels)}; {wall:.0f} s wall in all.\n")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"rows": rows, "runs": runs, "wall_seconds": wall, "jobs": args.jobs}, indent=2))
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(md)
    plot(runs, out / "peepholes.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
