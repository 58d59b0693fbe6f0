"""Every export form of one checkpoint: node count, file size, ORT CPU latency at (1x1) and (64x100),
and what float16 and int8 cost on the validation set. Prints a markdown table (the README's numbers).

    python benchmarks/forms.py artifacts/model.pt [--repeat 20] [--threads 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((1, 1), (64, 100))  # (batch, seq)


def variants():
    """(label, ExportOptions kwargs, sizes it can run): a static-shape form is one export per size."""
    from lstm_onnx.exporters.forms import FORMS

    for name, form in FORMS.items():
        if not form.static_shapes:
            yield name, dict(form=name), SIZES
            continue
        for batch, seq in SIZES:
            yield f"{name} {batch}x{seq}", dict(form=name, batch_size=batch, seq_len=seq), ((batch, seq),)
    yield "decomposed float16", dict(form="decomposed", dtype="float16"), SIZES
    yield "native int8", dict(form="native", quantize="int8"), SIZES
    yield "decomposed int8", dict(form="decomposed", quantize="int8"), SIZES
    yield "native int8-static", dict(form="native", quantize="int8-static"), SIZES
    yield "decomposed int8-static", dict(form="decomposed", quantize="int8-static"), SIZES


def latency_ms(path: Path, cfg, batch: int, seq: int, repeat: int, threads: int) -> float:
    """Median wall time of one ORT CPU run, after two warm-up runs."""
    from lstm_onnx.runtimes.session import open_session

    sess = open_session(path, "cpu", threads=threads).session
    shape = (batch, seq, cfg.input_size) if cfg.batch_first else (seq, batch, cfg.input_size)
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    times = []
    for k in range(repeat + 2):
        start = time.perf_counter()
        sess.run(None, feeds)
        if k >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def emulated_max_abs(ckpt, kwargs: dict, model, isa: str, max_items: int = 512) -> float:
    """Max abs vs float32 (ORT) on the validation windows of the int8 `model` run as `isa` computes it."""
    import onnxruntime as ort

    from lstm_onnx.exporters.export import ExportOptions, build_model, resolve_options
    from lstm_onnx.pipeline.data import load_dataset
    from lstm_onnx.runtimes.int8_gemm import run_quantized

    cfg = ckpt.model_config
    x = load_dataset(ckpt.config.data).val.x[:max_items]
    float_model = build_model(ckpt, resolve_options(ckpt, ExportOptions(**dict(kwargs, quantize=None))))
    feeds = {"x": x if cfg.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))}
    y = ort.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]
    return float(np.abs(run_quantized(model, feeds, isa, ["y"])[0] - y).max())


def measure(ckpt, repeat: int, threads: int) -> list[dict]:
    from lstm_onnx.core import metadata
    from lstm_onnx.exporters.export import ExportError, ExportOptions, export_checkpoint
    from lstm_onnx.exporters.validate import ValidationError

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs, sizes in variants():
            path = Path(tmp) / "m.onnx"
            try:
                model = export_checkpoint(ckpt, path, ExportOptions(**kwargs))
            except (ExportError, ValidationError) as exc:  # the export refuses this model in this form
                rows.append({"form": label, "refused": str(exc).splitlines()[0]})
                print(f"refused {label}: {rows[-1]['refused']}", file=sys.stderr)
                continue
            row = {"form": label, "nodes": len(model.graph.node),
                   "scan_body_nodes": sum(len(a.g.node) for n in model.graph.node for a in n.attribute
                                          if a.name == "body"),
                   "kib": path.stat().st_size / 1024,
                   "accuracy": metadata.read(str(path)).get("accuracy")}
            if kwargs.get("quantize"):
                row["avx2_max_abs"] = emulated_max_abs(ckpt, kwargs, model, "avx2")
            for batch, seq in sizes:
                row[f"ms {batch}x{seq}"] = latency_ms(path, ckpt.model_config, batch, seq, repeat, threads)
            rows.append(row)
            print(f"measured {label}", file=sys.stderr)
    return rows


def to_markdown(rows: list[dict], cfg) -> str:
    head = ["form", "nodes (+Scan body)", "file KiB"] + [f"ORT CPU ms {b}x{s}" for b, s in SIZES] + [
        "validation metric vs float32", "max abs vs float32", "int8 max abs, AVX2 emulated"]
    from lstm_onnx.runtimes.int8_gemm import host_isa

    isa = {"vnni": "VNNI (exact int32)", "avx2": "AVX2 (int16 pair sums)"}.get(host_isa(), "unknown")
    lines = [f"model: layers {cfg.num_layers}, hidden {cfg.hidden_size}, input {cfg.input_size}, "
             f"peepholes {cfg.peephole}, bidirectional {cfg.bidirectional}; int8 GEMM measured on: {isa}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['form']} | refused: {r['refused']} |" + " |" * (len(head) - 2))
            continue
        acc = r["accuracy"] or {}
        metric = (f"{acc['metric']} {acc['candidate']:.5g} vs {acc['float32']:.5g} ({acc['delta']:+.2g})"
                  if "metric" in acc else "")
        cells = [r["form"], f"{r['nodes']}" + (f" (+{r['scan_body_nodes']})" if r["scan_body_nodes"] else ""),
                 f"{r['kib']:.1f}"] + [f"{r[f'ms {b}x{s}']:.3f}" if f"ms {b}x{s}" in r else "-" for b, s in SIZES]
        cells += [metric, f"{acc['max_abs']:.2g}" if "max_abs" in acc else "",
                  f"{r['avx2_max_abs']:.2g}" if "avx2_max_abs" in r else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (0: ORT's default)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    from lstm_onnx.pipeline.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = measure(ckpt, args.repeat, args.threads)
    print(to_markdown(rows, ckpt.model_config))
    if args.json:
        from lstm_onnx.core.fileio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
