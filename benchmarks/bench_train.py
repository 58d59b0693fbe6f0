"""Time one LSTM-layer training step (forward + backward, loss = y.sum()) on the CPU.

Rows: nn.LSTM (no peepholes, oneDNN), the compiled kernel with and without peepholes, the pure-PyTorch
autograd Function with its hand-written backward (the path used without a compiler), and a naive
pure-PyTorch per-step autograd loop with peepholes. Reports the median of N runs after warm-up, and the
ratio to nn.LSTM.

    python -m benchmarks.bench_train [--threads 2] [--runs 7] [--warmup 2] [--json out.json]
                                     [--baseline-src old_peephole_lstm.cpp]

--baseline-src adds a row "compiled, peep (before)" for another version of the kernel source (e.g.
``git show <commit>:pipeline/csrc/peephole_lstm.cpp > /tmp/old.cpp``), built into a private temp folder and
timed interleaved with the others, so before/after come from one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from lstm_onnx.core import threads as thread_policy

thread_policy.apply_wait_policy()  # before torch loads OpenMP, as the CLI does

import torch  # noqa: E402

from lstm_onnx.core.machine import fingerprint, summary  # noqa: E402

SIZES = [  # (batch, seq, input, hidden)
    (32, 100, 16, 128),
    (32, 100, 128, 512),
]


def naive_peephole_layer(x, w_ih, w_hh, bias, peep, h0, c0):
    """Pure-PyTorch per-step loop (autograd does the backward)."""
    H = w_hh.shape[1]
    gx = torch.addmm(bias, x.reshape(-1, x.shape[-1]), w_ih.t()).view(x.shape[0], x.shape[1], 4 * H)
    h, c = h0, c0
    ys = []
    for t in range(x.shape[0]):
        g_i, g_f, g_g, g_o = torch.addmm(gx[t], h, w_hh.t()).chunk(4, 1)
        i = torch.sigmoid(g_i + peep[0] * c)
        f = torch.sigmoid(g_f + peep[1] * c)
        c = f * c + i * torch.tanh(g_g)
        o = torch.sigmoid(g_o + peep[2] * c)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def bench_size(B, S, I, H, warmup, runs, rows):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, H)
    x = torch.randn(S, B, I, requires_grad=True)
    h0 = torch.zeros(B, H)
    c0 = torch.zeros(B, H)
    w_ih = lstm.weight_ih_l0.detach().clone().requires_grad_()
    w_hh = lstm.weight_hh_l0.detach().clone().requires_grad_()
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().clone().requires_grad_()
    peep = (torch.randn(3, H) * 0.1).requires_grad_()
    params = [x, w_ih, w_hh, bias, peep, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]

    def zero():
        for p in params:
            p.grad = None

    def step_nn():
        zero()
        y, _ = lstm(x, (h0[None], c0[None]))
        y.sum().backward()

    def make_fused(with_peep, ext=None):
        from lstm_onnx.pipeline import fastpath

        def step():
            zero()
            y, _, _ = fastpath.fused_lstm_layer(x, w_ih, w_hh, bias, peep if with_peep else None, h0, c0, ext=ext)
            y.sum().backward()

        return step

    def step_python():
        from lstm_onnx.pipeline.cell import PeepholeLayerFunction

        zero()
        y, _, _ = PeepholeLayerFunction.apply(x, w_ih, w_hh, bias, peep, h0, c0)
        y.sum().backward()

    def step_naive():
        zero()
        y, _, _ = naive_peephole_layer(x, w_ih, w_hh, bias, peep, h0, c0)
        y.sum().backward()

    steps = [("nn.LSTM (oneDNN, no peep)", step_nn)]
    if rows["compiled"]:
        steps += [("compiled, peephole", make_fused(True)), ("compiled, no peep", make_fused(False))]
        if rows.get("baseline") is not None:
            steps += [("compiled, peep (before)", make_fused(True, rows["baseline"]))]
    steps += [("pure PyTorch (hand bwd), peep", step_python), ("naive loop, peephole", step_naive)]
    # Interleave the rows run by run so that machine noise hits every row alike.
    for name, fn in steps:
        for _ in range(warmup):
            fn()
    samples = {name: [] for name, _ in steps}
    for _ in range(runs):
        for name, fn in steps:
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(samples[steps[0][0]])
    base_min = min(samples[steps[0][0]])
    out = []
    for name, _ in steps:
        med = statistics.median(samples[name])
        paired = statistics.median(a / b for a, b in zip(samples[name], samples[steps[0][0]]))
        out.append({"name": name, "batch": B, "seq": S, "input": I, "hidden": H, "median_ms": med,
                    "min_ms": min(samples[name]), "ratio_vs_nn_lstm": med / base,
                    "paired_ratio_vs_nn_lstm": paired,
                    "min_ratio_vs_nn_lstm": min(samples[name]) / base_min, "samples_ms": samples[name]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7, help="timed runs per row (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None, help="write results as JSON here")
    ap.add_argument("--sizes", default=None, help="e.g. '32,100,16,128;32,100,128,512' (batch,seq,input,hidden)")
    ap.add_argument("--baseline-src", default=None, help="older kernel .cpp to time alongside (before/after)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";") if s.strip()]

    from lstm_onnx.pipeline import fastpath

    t0 = time.perf_counter()
    have = fastpath.available()
    load_s = time.perf_counter() - t0
    baseline = None
    if args.baseline_src and have:
        import tempfile

        baseline = fastpath.build_variant(args.baseline_src, tempfile.mkdtemp(prefix="bench-train-baseline-"))
    from lstm_onnx.pipeline import kernel_choice

    results, picked = [], {}
    for B, S, I, H in sizes:
        results += bench_size(B, S, I, H, args.warmup, args.runs, {"compiled": have, "baseline": baseline})
        choice = kernel_choice.choose(B, I, H, threads=args.threads)  # what `train` picks at this size
        picked[f"{B},{S},{I},{H}"] = {"kernel": choice.kernel, "threads": choice.threads, "reason": choice.reason}
    torch.set_num_threads(args.threads)
    machine = fingerprint()

    print(summary(machine))
    print(f"threads={args.threads} runs={args.runs} (median) torch={torch.__version__} "
          f"compiled={'yes' if have else 'no (' + str(fastpath.unavailable_reason()) + ')'} "
          f"brgemm={'yes' if have and fastpath._brgemm_active() else 'no'} load={load_s:.1f}s")
    hdr = (f"{'size (B,S,I,H)':<20} {'path':<28} {'median ms':>10} {'x nn.LSTM':>10} {'min ms':>9} "
           f"{'min x nn':>9} {'paired x':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        size = f"{r['batch']},{r['seq']},{r['input']},{r['hidden']}"
        print(f"{size:<20} {r['name']:<28} {r['median_ms']:>10.1f} {r['ratio_vs_nn_lstm']:>9.2f}x "
              f"{r['min_ms']:>9.1f} {r['min_ratio_vs_nn_lstm']:>8.2f}x {r['paired_ratio_vs_nn_lstm']:>8.2f}x")
    print("paired x: median over runs of (row time / nn.LSTM time in the same run), the least noise-sensitive.")
    for size, p in picked.items():
        print(f"train picks at {size}, {args.threads} thread(s): {p['kernel']} ({p['reason']})")
    if args.json:
        meta = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "torch": torch.__version__,
                "compiled_available": have, "unavailable_reason": fastpath.unavailable_reason(),
                "brgemm": bool(have and fastpath._brgemm_active()), "machine": machine}
        from lstm_onnx.core.fileio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"meta": meta, "results": results, "picked": picked}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
