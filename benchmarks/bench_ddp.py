"""Data-parallel training throughput: 1 process x 2 threads against 2 processes x 1 thread (gloo, DDP).

One training step of a SequenceModel (peephole LSTM, last-step head, MSE, Adam, grad clip 1.0) on a global
batch of B sequences: one process takes all B with 2 threads; two ranks take B/2 each with 1 thread and
average gradients through DDP; the ranks run under torchrun, as `train --nproc` runs them, and leave the
group through pipeline/distributed.shutdown (see there: why ranks aborted at exit). Sizes are bench_train's
(B32 T100, I16/H128 and I128/H512). Reported: sequences/s (median step), scaling efficiency (2 x 1 over 1 x 2:
the same two cores), and the all-reduce share of a DDP step, from timing an all_reduce of a gradient-sized
float32 buffer alone between the two ranks.

    python -m benchmarks.bench_ddp [--steps 7] [--warmup 2] [--json out.json] [--sizes 32,100,16,128 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lstm_onnx.core import threads

threads.apply_wait_policy()  # before torch loads OpenMP, as the CLI does

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from benchmarks.bench_train import SIZES  # noqa: E402
from lstm_onnx.core.machine import fingerprint, summary  # noqa: E402


def _model_and_batch(B, S, I, H, seed=0):
    from lstm_onnx.pipeline.config import ModelConfig
    from lstm_onnx.pipeline.model import SequenceModel
    from lstm_onnx.pipeline.train import seed_everything

    seed_everything(seed)
    model = SequenceModel(ModelConfig(input_size=I, hidden_size=H, output_size=1, head_dropout=0.0))
    g = torch.Generator().manual_seed(seed)
    return model, torch.randn(B, S, I, generator=g), torch.randn(B, 1, generator=g)


def _time_steps(net, x, y, warmup, steps, sync=lambda: None) -> list[float]:
    """Step seconds of pipeline.train.train_step, the training loop's own step."""
    from lstm_onnx.pipeline.train import train_step

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    times = []
    for k in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        train_step(net, opt, loss_fn, x, y, grad_clip=1.0)
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def single(size, warmup, steps, threads=2) -> float:
    """Median step seconds of one process over the whole global batch."""
    torch.set_num_threads(threads)
    model, x, y = _model_and_batch(*size)
    return statistics.median(_time_steps(model, x, y, warmup, steps))


def _rank(size, warmup, steps, out) -> None:
    """One torchrun rank (RANK, WORLD_SIZE, MASTER_ADDR/PORT from its environment)."""
    from lstm_onnx.pipeline import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        found = _rank_steps(size, warmup, steps)  # the DDP module is gone when it returns
        if dist.get_rank() == 0:
            Path(out).write_text(json.dumps(found))
    finally:
        distributed.shutdown()


def _rank_steps(size, warmup, steps) -> dict:
    rank = dist.get_rank()
    B, S, I, H = size
    model, x, y = _model_and_batch(*size)
    half = slice(rank * B // 2, (rank + 1) * B // 2)
    net = torch.nn.parallel.DistributedDataParallel(model)
    step = _time_steps(net, x[half], y[half], warmup, steps, sync=dist.barrier)
    buf = torch.zeros(sum(p.numel() for p in model.parameters()))
    reduce = []
    for k in range(warmup + 3 * steps):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        if k >= warmup:
            reduce.append(time.perf_counter() - t0)
    return {"step": statistics.median(step), "allreduce": statistics.median(reduce), "numel": buf.numel()}


def data_parallel(size, warmup, steps) -> dict:
    """Two ranks under torchrun (pipeline/distributed.py's launcher, as `train --nproc 2`)."""
    from lstm_onnx.pipeline import distributed

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r0.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "benchmarks.bench_ddp", "--rank-of", ",".join(map(str, size)), "--warmup", str(warmup),
               "--steps", str(steps), "--rank-out", out]
        result = distributed.launch(cmd)
        if result.returncode:
            raise SystemExit(f"bench_ddp: rank {result.failed_rank} {distributed.describe_exit(result.exitcode)}")
        return json.loads(Path(out).read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sizes", nargs="*", help="B,S,I,H each (default: bench_train's two sizes)")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--rank-of", help=argparse.SUPPRESS)  # B,S,I,H: run as one torchrun rank
    ap.add_argument("--rank-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rank_of:
        return _rank(tuple(int(v) for v in args.rank_of.split(",")), args.warmup, args.steps, args.rank_out)
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else SIZES
    rows = []
    for size in sizes:
        B = size[0]
        one = single(size, args.warmup, args.steps)
        ddp = data_parallel(size, args.warmup, args.steps)
        rows.append({"B": B, "S": size[1], "I": size[2], "H": size[3], "params": ddp["numel"],
                     "seq_s_1x2": B / one, "seq_s_2x1": B / ddp["step"], "efficiency": one / ddp["step"],
                     "step_ms_1x2": one * 1e3, "step_ms_2x1": ddp["step"] * 1e3,
                     "allreduce_ms": ddp["allreduce"] * 1e3, "allreduce_share": ddp["allreduce"] / ddp["step"]})
    machine = fingerprint()
    print(summary(machine))
    print(f"global batch B, median of {args.steps} steps")
    print("| B x T | I/H | params | 1 proc x 2 thr seq/s | 2 proc x 1 thr seq/s | efficiency | all-reduce ms | "
          "all-reduce share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['B']}x{r['S']} | {r['I']}/{r['H']} | {r['params']} | {r['seq_s_1x2']:.1f} | "
              f"{r['seq_s_2x1']:.1f} | {r['efficiency']:.2f} | {r['allreduce_ms']:.2f} | "
              f"{100 * r['allreduce_share']:.1f}% |")
    if args.json:
        from lstm_onnx.core.fileio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
