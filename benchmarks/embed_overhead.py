"""What one streaming step through runtimes.embed costs next to a bare InferenceSession.run.

    python benchmarks/embed_overhead.py artifacts/model-serve.onnx [--steps 2000] [--rounds 15]

The bare run gets pre-normalized feeds and carries h/c itself: the least any app must do. The Stepper also
checks the input, normalizes, denormalizes and keeps the state. Both run one step at batch 1, alternating in
rounds so that load from other processes hits both alike. Reported: the ratio of each side's best round (as
timeit would) and the median of per-round ratios. Goal: <= 1.2x.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.session import open_session


def bare_loop(session, names, xs_norm, h, c, lengths) -> float:
    start = time.perf_counter()
    for x in xs_norm:
        feeds = {"x": x, "h0": h, "c0": c}
        if lengths is not None:
            feeds["lengths"] = lengths
        _, h, c = session.run(names, feeds)
    return (time.perf_counter() - start) / len(xs_norm)


def stepper_loop(stepper, xs_raw) -> float:
    start = time.perf_counter()
    for x in xs_raw:
        stepper.step(x)
    return (time.perf_counter() - start) / len(xs_raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=2000, help="steps per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    pred = Predictor.load(args.model, threads=args.threads)
    if not pred.stateful:
        raise SystemExit("needs a model exported with --stateful")
    # The bare session is opened as the Predictor's is (runtimes/session.py), so only the wrapper differs.
    session = open_session(args.model, "cpu", threads=args.threads).session
    rng = np.random.default_rng(0)
    xs_raw = rng.normal(size=(args.steps, 1, pred.num_features)).astype(np.float32)
    xs_norm = [pred.normalize(x)[:, None, :] for x in xs_raw]
    h = pred.zero_state(1)
    lengths = np.ones(1, np.int32) if pred.has_lengths else None
    names = ["y", "hn", "cn"]
    stepper = pred.stream()
    bare_loop(session, names, xs_norm[:200], h, h, lengths)  # warm up both
    stepper_loop(stepper, xs_raw[:200])
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_loop(session, names, xs_norm, h, h, lengths))
        ours.append(stepper_loop(stepper, xs_raw))
    ratios = np.array(ours) / np.array(bare)
    result = {"bare_us": round(float(np.median(bare)) * 1e6, 2), "stepper_us": round(float(np.median(ours)) * 1e6, 2),
              "ratio_median": round(float(np.median(ratios)), 3),
              # best round of each, as timeit reports: the least disturbed by other processes
              "ratio_best": round(float(min(ours) / min(bare)), 3), "ratio_min": round(float(ratios.min()), 3),
              "ratio_max": round(float(ratios.max()), 3), "steps": args.steps, "rounds": args.rounds}
    print(f"bare InferenceSession.run: {result['bare_us']:.1f} us/step; Stepper.step: {result['stepper_us']:.1f} "
          f"us/step; ratio of best rounds {result['ratio_best']:.3f}, median {result['ratio_median']:.3f} "
          f"(min {result['ratio_min']:.3f}, "
          f"max {result['ratio_max']:.3f}; goal <= 1.2)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
