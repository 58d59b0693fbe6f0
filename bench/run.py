"""Plan the workers (runtime x form x provider x threads), run them one by one, collect the rows."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lstm_onnx.bench.cases import DEFAULT_CASES, Case, lstm_flops

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class BenchConfig:
    input_size: int = 64
    hidden: int = 256
    layers: int = 1
    cases: tuple[Case, ...] = DEFAULT_CASES
    threads: tuple[int, ...] = (1, 2)
    forms: tuple[str, ...] | None = None  # None: every export form
    providers: tuple[str, ...] = ("cpu",)  # cpu, cuda
    runtimes: tuple[str, ...] = ("onnxruntime", "openvino", "torch")
    min_time: float = 0.3  # seconds of timed runs per cell (after warm-up)
    gemm_n: int = 1024  # the peak GEMM is [n, n] x [n, n]
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
    gemm_gflops: float | None = None
    pct_of_gemm_peak: float | None = None
    error: str = ""


@dataclass
class BenchResult:
    config: dict
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped}


def _forms(config: BenchConfig) -> list[str]:
    from lstm_onnx.exporters.export import FORMS

    return list(config.forms or FORMS)


def _export_models(ckpt, config: BenchConfig, forms: list[str], where: Path) -> dict:
    """{form: {case name: path or None}}, with errors in {form: {case: message}} (second value)."""
    from lstm_onnx.bench.models import export_form

    paths, errors = {}, {}
    for form in forms:
        paths[form], errors[form] = {}, {}
        for case in config.cases:
            key = f"{case.batch}x{case.seq}" if form == "unrolled" else "dynamic"
            path = where / f"{form}-{key}.onnx"
            try:
                if not path.exists():
                    export_form(ckpt, form, path, seq=case.seq, batch=case.batch)
                paths[form][case.name] = str(path)
            except Exception as exc:  # an export that cannot be made is one skipped cell, not a dead bench
                paths[form][case.name], errors[form][case.name] = None, f"export failed: {exc}"
    return paths, errors


def plan(config: BenchConfig, models: dict, errors: dict, checkpoint: str) -> tuple[list[dict], dict]:
    """Worker specs, and {label: why} for the runtimes that are not installed."""
    specs, skipped = [], {}
    base = dict(input_size=config.input_size, hidden=config.hidden, layers=config.layers,
                min_time=config.min_time, gemm_n=config.gemm_n)

    def cases_for(form):
        return [dict(asdict(c), model=models.get(form, {}).get(c.name),
                     model_error=errors.get(form, {}).get(c.name)) for c in config.cases]

    if "onnxruntime" in config.runtimes:
        from lstm_onnx.runtimes.ort import available_providers

        have = available_providers()
        for provider in config.providers:
            if provider not in have:
                skipped[f"onnxruntime-{provider}"] = (f"unavailable (provider {provider!r} not in this onnxruntime "
                                                      f"build; pip install onnxruntime-gpu)")
                continue
            gpu = provider != "cpu"
            for form in models:
                for threads in (config.threads[-1:] if gpu else config.threads):
                    variants = [dict(io_binding=False)]
                    if gpu:
                        variants.append(dict(io_binding=True))
                        if form == "unrolled":
                            variants.append(dict(io_binding=True, cuda_graph=True))
                    for v in variants:
                        specs.append(dict(base, kind="ort", runtime="onnxruntime", provider=provider, form=form,
                                          threads=threads, cases=cases_for(form), **v))
    if "openvino" in config.runtimes:
        if importlib.util.find_spec("openvino") is None:
            skipped["openvino-cpu"] = "unavailable (pip install 'lstm-onnx-pipeline[openvino]')"
        else:
            for form in models:
                for threads in config.threads:
                    specs.append(dict(base, kind="openvino", runtime="openvino", provider="cpu", form=form,
                                      threads=threads, cases=cases_for(form)))
    if "torch" in config.runtimes:
        devices = ["cpu"] + (["cuda"] if "cuda" in config.providers else [])
        for device in devices:
            if device == "cuda" and not _torch_cuda():
                skipped["torch-cuda"] = "unavailable (torch has no CUDA here; install a CUDA build of torch)"
                continue
            for kind in ("torch-peephole", "torch-lstm"):
                for threads in (config.threads[-1:] if device == "cuda" else config.threads):
                    form = "eager" if kind == "torch-peephole" else ("cudnn, no P" if device == "cuda" else "no P")
                    specs.append(dict(base, kind=kind, runtime="torch", provider=device, device=device, form=form,
                                      threads=threads, checkpoint=checkpoint, cases=cases_for("torch")))
    return specs, skipped


def _torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def label(spec: dict) -> str:
    name = {"ort": "onnxruntime", "openvino": "openvino"}.get(spec["kind"], spec["kind"])
    name += f"-{spec['provider']}"
    if spec.get("io_binding"):
        name += "-iobinding" + ("+graph" if spec.get("cuda_graph") else "")
    return name


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
    peak = result.get("gemm_gflops")
    for case in config.cases:
        row = Row(case.name, case.batch, case.seq, label(spec), spec["runtime"], spec["form"], spec["provider"],
                  spec["threads"], gemm_gflops=peak)
        cell = result.get("cases", {}).get(case.name, {"error": result.get("error", "no result")})
        if "error" in cell:
            row.error = cell["error"]
        else:
            row.median_ms, row.p99_ms = cell["median_ms"], cell["p99_ms"]
            row.seq_per_s = case.batch / (row.median_ms / 1e3)
            flops = lstm_flops(case.batch, case.seq, config.input_size, config.hidden, config.layers)
            row.gflops = flops / (row.median_ms * 1e6)
            row.pct_of_gemm_peak = 100.0 * row.gflops / peak if peak else None
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
        for k, spec in enumerate(specs, 1):
            log(f"[{k}/{len(specs)}] {label(spec)} form={spec['form']} threads={spec['threads']}")
            result.rows += rows_from(spec, run_worker(spec, config.worker_timeout), config)
    return result
