"""Plan the workers (runtime x form x provider x threads), run them one by one, collect the rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lstm_onnx.bench import peak
from lstm_onnx.bench.cases import DEFAULT_CASES, Case, lstm_flops
from lstm_onnx.core.machine import fingerprint
from lstm_onnx.exporters.forms import FORMS

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class BenchConfig:
    input_size: int = 64
    hidden: int = 256
    layers: int = 1
    cases: tuple[Case, ...] = DEFAULT_CASES
    threads: tuple[int, ...] = (1, 2)
    forms: tuple[str, ...] | None = None  # None: every export form
    providers: tuple[str, ...] = ("cpu",)  # the devices for runtime families: cpu, cuda, tensorrt
    runtimes: tuple[str, ...] | None = None  # registry families or runner names; None: the default runners
    min_time: float = 0.3  # seconds of timed runs per cell (after warm-up)
    gemm_n: int = 1024  # the large square one of the peak GEMMs (the others: the LSTM's own shapes)
    worker_timeout: float = 300.0


@dataclass
class Row:
    case: str
    batch: int
    seq: int
    runner: str
    runtime: str
    form: str
    provider: str
    threads: int
    median_ms: float | None = None
    p99_ms: float | None = None
    seq_per_s: float | None = None
    gflops: float | None = None
    gemm_gflops: float | None = None  # the run's peak for this runtime, provider and thread count
    pct_of_gemm_peak: float | None = None
    peak_exceeded: bool = False  # faster than that peak: the peak is understated and the % is no measure
    worker_gemm_gflops: float | None = None  # the peak this row's own worker measured
    error: str = ""
    placement_problems: list[str] = field(default_factory=list)  # nodes that ran off the requested provider


@dataclass
class BenchResult:
    config: dict
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    peaks: dict[str, dict] = field(default_factory=dict)  # bench.peak.run_peaks
    machine: dict = field(default_factory=fingerprint)  # where it ran (core/machine.py)

    def to_dict(self) -> dict:
        return {"config": self.config, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped,
                "peaks": self.peaks, "machine": self.machine}


def _forms(config: BenchConfig) -> list[str]:
    unknown = [f for f in config.forms or () if f not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
    return list(config.forms or FORMS)


def _export_models(ckpt, config: BenchConfig, forms: list[str], where: Path) -> dict:
    """{form: {case name: path or None}}, with errors in {form: {case: message}} (second value)."""
    from lstm_onnx.bench.models import export_form

    paths, errors = {}, {}
    for form in forms:
        paths[form], errors[form] = {}, {}
        for case in config.cases:
            key = f"{case.batch}x{case.seq}" if FORMS[form].static_shapes else "dynamic"
            path = where / f"{form}-{key}.onnx"
            try:
                if not path.exists():
                    export_form(ckpt, form, path, seq=case.seq, batch=case.batch)
                paths[form][case.name] = str(path)
            except Exception as exc:  # an export that cannot be made is one skipped cell, not a dead bench
                paths[form][case.name], errors[form][case.name] = None, f"export failed: {exc}"
    return paths, errors


def plan(config: BenchConfig, models: dict, errors: dict, checkpoint: str) -> tuple[list[dict], dict]:
    """Worker specs for the registry's runners that `config` selects, and {runner: why} for those that cannot
    run here. GPU runners run at the largest thread count only (their threads only feed the device)."""
    from lstm_onnx.runtimes import registry

    specs, skipped = [], {}
    base = dict(input_size=config.input_size, hidden=config.hidden, layers=config.layers,
                min_time=config.min_time, gemm_n=config.gemm_n, checkpoint=checkpoint)

    def cases_for(form):
        return [dict(asdict(c), model=models.get(form, {}).get(c.name),
                     model_error=errors.get(form, {}).get(c.name)) for c in config.cases]

    for info in registry.bench_selection(config.runtimes, config.providers):
        why = info.probe() if info.probe else None
        if why:
            skipped[info.name] = f"unavailable ({why})"
            continue
        drive = info.bench
        forms = ["torch"] if drive.worker == "torch" else [
            f for f in models if drive.form_needs is None or getattr(FORMS[f], drive.form_needs)]
        for form in forms:
            for threads in (config.threads if info.provider == "cpu" else config.threads[-1:]):
                for variant in drive.variants:
                    spec = dict(base, worker=drive.worker, kind=drive.worker, runner=info.name, runtime=info.family,
                                provider=info.provider, form=form, threads=threads, cases=cases_for(form))
                    specs.append({**spec, **drive.spec, **variant})
    return specs, skipped


def label(spec: dict) -> str:
    """The row's runner: the registry name, or the variant's own label (torch-peephole-cpu, torch-lstm-cpu)."""
    return spec.get("label", spec["runner"])


def run_worker(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, **{k: str(spec["threads"]) for k in THREAD_ENV})
    try:
        proc = subprocess.run([sys.executable, "-m", "lstm_onnx.bench.worker"], input=json.dumps(spec), env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f}s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"worker exited {proc.returncode}: {tail[:300]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows_from(spec: dict, result: dict, config: BenchConfig) -> list[Row]:
    rows = []
    for case in config.cases:
        row = Row(case.name, case.batch, case.seq, label(spec), spec["runtime"], spec["form"], spec["provider"],
                  spec["threads"], worker_gemm_gflops=result.get("gemm_gflops"))
        cell = result.get("cases", {}).get(case.name, {"error": result.get("error", "no result")})
        if "error" in cell:
            row.error = cell["error"]
        else:
            row.median_ms, row.p99_ms = cell["median_ms"], cell["p99_ms"]
            row.placement_problems = cell.get("placement_problems", [])
            row.seq_per_s = case.batch / (row.median_ms / 1e3)
            flops = lstm_flops(case.batch, case.seq, config.input_size, config.hidden, config.layers)
            row.gflops = flops / (row.median_ms * 1e6)
        rows.append(row)
    return rows


def run_bench(config: BenchConfig, log=print) -> BenchResult:
    from lstm_onnx.bench.models import random_checkpoint

    result = BenchResult(asdict(config))
    ckpt = random_checkpoint(config.input_size, config.hidden, config.layers, peephole=True)
    with tempfile.TemporaryDirectory(prefix="lstm-bench-") as tmp:
        where = Path(tmp)
        ckpt.save(where / "model.pt")
        models, errors = _export_models(ckpt, config, _forms(config), where)
        specs, result.skipped = plan(config, models, errors, str(where / "model.pt"))
        worker_peaks = []
        for k, spec in enumerate(specs, 1):
            log(f"[{k}/{len(specs)}] {label(spec)} form={spec['form']} threads={spec['threads']}")
            out = run_worker(spec, config.worker_timeout)
            result.rows += rows_from(spec, out, config)
            worker_peaks.append((peak.peak_key(spec["runtime"], spec["provider"], spec["threads"]), out.get("gemm")))
    result.peaks = peak.run_peaks(worker_peaks)
    peak.apply(result.rows, result.peaks)
    return result
