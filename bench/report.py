"""Bench output: a text/Markdown table, JSON, a PNG chart, and the headline numbers."""
from __future__ import annotations

import json
from pathlib import Path

from lstm_onnx.bench.run import BenchResult, Row
from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.core.machine import summary
from lstm_onnx.core.tables import grid

HEAD = ["case", "BxS", "runner", "form", "thr", "median ms", "p99 ms", "seq/s", "GFLOP/s", "GEMM GFLOP/s",
        "% peak"]
PEAK_HEAD = ["GEMM peak of", "thr", "GFLOP/s", "best shape MxKxN", "route", "repeats min/med/max",
             "workers min/med/max (n)"]
OVER = "OVER PEAK"  # the % cell of a row faster than its peak: that peak is understated, the % means nothing


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _cells(r: Row) -> list[str]:
    if r.error:
        return [r.case, f"{r.batch}x{r.seq}", r.runner, r.form, str(r.threads), f"error: {r.error[:70]}"] + [""] * 5
    return [r.case, f"{r.batch}x{r.seq}", r.runner, r.form, str(r.threads), _fmt(r.median_ms, ".3f"),
            _fmt(r.p99_ms, ".3f"), _fmt(r.seq_per_s, ".1f"), _fmt(r.gflops, ".2f"), _fmt(r.gemm_gflops, ".1f"),
            OVER if r.peak_exceeded else _fmt(r.pct_of_gemm_peak, ".1f")]


def _spread(s: dict, n: bool = False) -> str:
    text = f"{s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f}"
    return text + f" ({s['n']})" if n else text


def _peak_cells(key: str, p: dict) -> list[str]:
    name, _, threads = key.rpartition(" t")
    return [name, threads, f"{p['gflops']:.1f}", p["shape"], p["route"], _spread(p["spread"]),
            _spread(p["workers"], n=True)]


def peak_warnings(result: BenchResult) -> list[str]:
    """One line per row that ran faster than its GEMM peak (which therefore was measured too low)."""
    return [f"WARNING: GEMM peak understated: {r.runner} {r.form} @ {r.case} ({r.batch}x{r.seq}), {r.threads} thr "
            f"ran at {r.pct_of_gemm_peak:.1f}% of it ({r.gflops:.1f} vs {r.gemm_gflops:.1f} GFLOP/s); its % of peak "
            f"is not a measure" for r in result.rows if r.peak_exceeded]


def placement_warnings(result: BenchResult) -> list[str]:
    """Rows whose session ran nodes off the requested provider: their time is not that provider's."""
    return [f"WARNING: {r.runner} {r.form} @ {r.case}: {p}" for r in result.rows for p in r.placement_problems]


def to_table(result: BenchResult, markdown: bool = False) -> str:
    lines = [summary(result.machine), ""] + grid(HEAD, [_cells(r) for r in result.rows], markdown)
    lines += [f"skipped {k}: {v}" for k, v in result.skipped.items()]
    if result.peaks:
        lines += ["", "GEMM peaks: the fastest run of the LSTM's own GEMM shapes and a large square one, the max "
                      "over this run's workers; % peak divides by these. Spread in GFLOP/s.", ""]
        lines += grid(PEAK_HEAD, [_peak_cells(k, p) for k, p in sorted(result.peaks.items())], markdown)
    warnings = peak_warnings(result) + placement_warnings(result)
    return "\n".join(warnings + ([""] if warnings else []) + lines + [""] + warnings + headline(result))


def _find(result: BenchResult, case: str, runner: str, form: str | None = None) -> list[Row]:
    return [r for r in result.rows if r.case == case and r.runner == runner and (form is None or r.form == form)
            and not r.error]


def headline(result: BenchResult) -> list[str]:
    """The numbers the issue asks for: ORT CPU's % of GEMM peak at batch, and its ratio to torch at streaming."""
    lines = []
    batch_case = next((c["name"] for c in result.config["cases"] if c["batch"] > 1), None)
    stream_case = next((c["name"] for c in result.config["cases"] if c["batch"] == 1 and c["seq"] == 1), None)
    forms = sorted({r.form for r in result.rows if r.runner == "onnxruntime-cpu"})
    for form in forms:
        if batch_case:
            for r in _find(result, batch_case, "onnxruntime-cpu", form):
                pct = ("OVER the ORT GEMM peak, which is understated" if r.peak_exceeded
                       else f"{_fmt(r.pct_of_gemm_peak, '.1f')}% of ORT GEMM peak")
                lines.append(f"onnxruntime-cpu {form} @ {r.batch}x{r.seq}, {r.threads} thr: {pct} ({r.gflops:.1f} "
                             f"of {_fmt(r.gemm_gflops, '.1f')} GFLOP/s)")
        if stream_case:
            for r in _find(result, stream_case, "onnxruntime-cpu", form):
                torch = [t for t in _find(result, stream_case, "torch-peephole-cpu") if t.threads == r.threads]
                if torch:
                    lines.append(f"onnxruntime-cpu {form} @ 1x1, {r.threads} thr: {r.median_ms:.3f} ms vs "
                                 f"PyTorch peephole module {torch[0].median_ms:.3f} ms "
                                 f"({torch[0].median_ms / r.median_ms:.1f}x faster)")
    return lines


def write_json(result: BenchResult, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(result.to_dict(), warnings=peak_warnings(result) + placement_warnings(result)),
                                  indent=2))


def write_chart(result: BenchResult, path) -> None:
    """One panel per case: median latency (log scale) per runner/form/threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = list(dict.fromkeys(r.case for r in result.rows))
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 0.3 * len(result.rows) / max(len(cases), 1) + 2),
                             squeeze=False)
    for ax, case in zip(axes[0], cases):
        rows = [r for r in result.rows if r.case == case and not r.error]
        labels = [f"{r.runner} {r.form} t{r.threads}" for r in rows]
        colors = [{"onnxruntime": "tab:blue", "openvino": "tab:purple", "torch": "tab:orange"}.get(r.runtime, "gray")
                  for r in rows]
        ax.barh(labels, [r.median_ms for r in rows], color=colors)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
        ax.invert_yaxis()
        first = rows[0] if rows else None
        ax.set_title(f"{case} ({first.batch}x{first.seq})" if first else case)
        ax.set_xlabel("median latency, ms (log)")
        ax.tick_params(axis="y", labelsize=7)
    cfg = result.config
    fig.suptitle(f"peephole LSTM, I={cfg['input_size']} H={cfg['hidden']} layers={cfg['layers']}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_all(result: BenchResult, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {"json": out / "bench.json", "table": out / "bench.md", "chart": out / "bench.png"}
    write_json(result, paths["json"])
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(to_table(result, markdown=True) + "\n")
    write_chart(result, paths["chart"])
    return paths
