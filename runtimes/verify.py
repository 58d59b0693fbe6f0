"""verify: any ONNX model with LSTM nodes, on every available runner, against a baseline.

The baseline is a runner (default: torch with a checkpoint, else ORT CPU) or saved outputs (.npz). Each ORT
session is profiled, so the report says which provider ran each node and warns when one fell back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError, RunnerUnavailable
from lstm_onnx.runtimes.compare import ParityReport, Tolerances, compare_outputs
from lstm_onnx.runtimes.feeds import onnx_input_shapes, random_feeds
from lstm_onnx.runtimes.tolerances import Tolerance, default_tolerance

# Tried by default; the ones whose runtime is missing are reported as skipped with how to install them. The
# ones the capability table says compute this model wrongly run too, and their failures are reported as
# expected (XFAIL, with the reason and the form to export instead); they do not fail the run.
MODEL_RUNNERS = ("onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-cuda-iobinding", "onnxruntime-tensorrt",
                 "openvino-cpu", "onnx.reference")
CHECKPOINT_RUNNERS = ("numpy",)
RUNNERS = CHECKPOINT_RUNNERS + MODEL_RUNNERS
CPU_RUNNERS = ("numpy", "onnxruntime-cpu", "onnx.reference")  # verify_checkpoint's default
NEEDS_CHECKPOINT = {"torch", "numpy"}
CAPABILITY_KEYS = {"onnxruntime-cpu": "ort-cpu", "onnxruntime-cuda": "ort-cuda", "onnxruntime-tensorrt": "tensorrt",
                   "openvino": "openvino", "onnx.reference": "onnx-reference"}


@dataclass
class VerifyOptions:
    runners: tuple[str, ...] | None = None  # None: every known runner (checkpoint ones only with one)
    baseline: str | None = None  # None: torch with a checkpoint, else onnxruntime-cpu
    batch: int = 4
    seq: int = 23
    seed: int = 0
    inputs: str | Path | None = None  # .npz of feeds
    expected: str | Path | None = None  # .npz of baseline outputs; replaces the baseline runner
    tolerances: Tolerances | None = None  # None: by the model's precision
    allow_tf32: bool = False
    provider_options: dict[str, dict] = field(default_factory=dict)  # short provider -> options
    strict_placement: bool = False
    save_inputs: str | Path | None = None
    save_outputs: str | Path | None = None  # the baseline's outputs, reusable as --expected


@dataclass
class VerifyReport:
    parity: ParityReport
    placements: dict = field(default_factory=dict)  # runner -> [NodePlacement]
    placement_problems: list[str] = field(default_factory=list)
    strict_placement: bool = False

    @property
    def passed(self) -> bool:
        return self.parity.passed and not (self.strict_placement and self.placement_problems)

    # ParityReport's fields, for callers that treat this as one
    reference = property(lambda self: self.parity.reference)
    rows = property(lambda self: self.parity.rows)
    skipped = property(lambda self: self.parity.skipped)
    errors = property(lambda self: self.parity.errors)
    warnings = property(lambda self: self.parity.warnings)

    def to_dict(self) -> dict:
        from lstm_onnx.runtimes.placement import summarize, to_dicts

        d = self.parity.to_dict()
        d.update(passed=self.passed, strict_placement=self.strict_placement,
                 placement={r: {"summary": summarize(p), "nodes": to_dicts(p)} for r, p in self.placements.items()},
                 placement_problems=self.placement_problems)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)

    def to_table(self) -> str:
        return self._render(markdown=False)

    def to_markdown(self) -> str:
        return self._render(markdown=True)

    def _render(self, markdown: bool) -> str:
        p = self.parity
        out = [f"{'## ' if markdown else ''}parity against {p.reference}  (inputs {p.inputs})"]
        for output in dict.fromkeys(r.output for r in p.rows):
            rows = [[r.runner, f"{r.max_abs:.3g}", f"{r.mean_abs:.3g}", f"{r.max_rel:.3g}", f"{r.atol:g}/{r.rtol:g}",
                     r.result]
                    for r in p.rows if r.output == output]
            out += ["", f"{'### ' if markdown else ''}output {output}"]
            out += _grid(["runner", "max abs", "mean abs", "max rel", "atol/rtol", "result"], rows, markdown)
        if p.errors or p.skipped:
            out += ["", f"{'### ' if markdown else ''}not compared"]
            rows = [[n, f"ERROR: {w}"] for n, w in p.errors.items()] + [[n, f"skipped: {w}"] for n, w in p.skipped.items()]
            out += _grid(["runner", "why"], rows, markdown)
        if self.placements:
            from lstm_onnx.runtimes.placement import summarize

            out += ["", f"{'### ' if markdown else ''}placement (from ORT profiling)"]
            rows = [[r, ", ".join(f"{prov}: {n}" for prov, n in summarize(pl).items()),
                     ", ".join(f"{x.op_type}@{x.provider.replace('ExecutionProvider', '')}" for x in pl
                               if x.op_type == "LSTM") or "-"]
                    for r, pl in self.placements.items()]
            out += _grid(["runner", "nodes per provider", "LSTM nodes"], rows, markdown)
        warn = "> **Warning:** " if markdown else "WARNING: "
        out += [""] + [warn + w for w in p.warnings] if p.warnings else []
        if self.strict_placement and self.placement_problems:
            out.append("FAILED by --strict-placement: a node ran on a provider other than the one requested")
        out += ["", ("**PASSED**" if markdown else "PASSED") if self.passed else ("**FAILED**" if markdown else "FAILED")]
        return "\n".join(out)


def _grid(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


class SavedOutputsRunner(Runner):
    """The baseline as saved outputs: returns the arrays of an .npz whatever the feeds."""

    def __init__(self, path, input_names: list[str]):
        super().__init__()
        self.path = Path(path)
        self.name = f"expected:{self.path.name}"
        self._inputs = list(input_names)

    def _input_names(self):
        return self._inputs

    def _infer(self, feeds):
        return load_npz(self.path, "expected outputs")


def load_npz(path, what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz of {what}: {str(exc).splitlines()[0]}") from None


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    from lstm_onnx.core.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64}
BATCH_WORDS, SEQ_WORDS = ("batch", "n", "b"), ("seq", "len", "time", "step", "s", "t")


def model_feeds(model, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Random feeds for any model: symbolic dims named like batch/seq get those sizes; dtypes follow the model."""
    batch, seq = _static_sizes(model, batch, seq)
    shapes = {}
    for name, dims in onnx_input_shapes(model).items():
        shapes[name] = [_size_name(d, name) if isinstance(d, str) or d == 0 else d for d in dims]
    feeds = random_feeds(shapes, batch, seq, seed)
    for vi in model.graph.input:
        dtype = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
        if dtype is None:
            raise ValueError(f"input {vi.name!r} has an element type we cannot generate; pass --inputs in.npz")
        feeds[vi.name] = feeds[vi.name].astype(dtype)
    return feeds


def _size_name(dim, input_name: str) -> str:
    word = str(dim).lower()
    if word in ("batch", "seq"):
        return word
    if any(w in word for w in ("batch",)) or word in BATCH_WORDS:
        return "batch"
    if any(w in word for w in ("seq", "len", "time", "step")) or word in SEQ_WORDS:
        return "seq"
    raise ValueError(f"input {input_name!r} has a dim {dim!r} that is neither batch nor seq; pass --inputs in.npz")


def _static_sizes(model, batch: int, seq: int) -> tuple[int, int]:
    """A static-shape (unrolled) export runs at its own size, recorded in its metadata."""
    from lstm_onnx.core import metadata

    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    return int(meta.get("batch_size", batch)), int(meta.get("seq_len", seq))


def model_precision(model) -> str:
    """The precision our metadata records (int8, float16), else float16 if the model takes or computes in
    float16 (Casts inside), else float32."""
    from lstm_onnx.core import metadata
    from lstm_onnx.runtimes.capabilities import model_features

    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    if meta.get("quantization", "none") != "none":
        return meta["quantization"]
    if meta.get("dtype", "float32") != "float32":
        return meta["dtype"]

    types = {vi.type.tensor_type.elem_type for vi in model.graph.input}
    return "float16" if 10 in types or "float16" in model_features(model) else "float32"


def make_runner(name: str, model_path, ckpt, input_names: list[str], options: VerifyOptions) -> Runner:
    from lstm_onnx.runtimes.ort import OnnxRuntimeBoundRunner, OnnxRuntimeRunner

    if name in NEEDS_CHECKPOINT and ckpt is None:
        raise RunnerUnavailable("needs a checkpoint (verify CHECKPOINT MODEL)")
    if name == "torch":
        from lstm_onnx.runtimes.torch_ref import TorchRunner

        return TorchRunner(ckpt.build_model(), input_names)
    if name == "numpy":
        from lstm_onnx.runtimes.numpy_ref import NumpyRunner

        return NumpyRunner(ckpt.state_dict, ckpt.model_config, input_names)
    if name == "onnx.reference":
        from lstm_onnx.runtimes.onnx_reference import OnnxReferenceRunner

        return OnnxReferenceRunner(model_path)
    if name.startswith("openvino-"):
        from lstm_onnx.runtimes.openvino import OpenVINORunner

        return OpenVINORunner(model_path, device=name.split("-", 1)[1])
    if name.startswith("onnxruntime-"):
        parts = name.split("-")[1:]
        provider, fast = parts[0], parts[1:]
        kwargs = dict(provider_options=options.provider_options.get(provider), allow_tf32=options.allow_tf32)
        if fast in (["iobinding"], ["graph"]):
            graph = fast == ["graph"]
            return OnnxRuntimeBoundRunner(model_path, provider, cuda_graph=graph, profile=not graph, **kwargs)
        if not fast:
            return OnnxRuntimeRunner(model_path, provider, profile=True, **kwargs)
    raise ValueError(f"unknown runner {name!r}; known: torch, numpy, onnxruntime-<provider>[-iobinding|-graph], "
                     f"openvino-<device>, onnx.reference")


def _runner_tolerances(runner: Runner, base: Tolerances, explicit: bool) -> Tolerances:
    if getattr(runner, "uses_tf32", False) and not explicit:
        # TF32 keeps 10 mantissa bits: float32 tolerances would flag the expected ~2.5e-4 drift.
        return Tolerances(default_tolerance("tf32"))
    return base


def verify_model(model_path, ckpt=None, options: VerifyOptions | None = None) -> VerifyReport:
    """Run the baseline and every runner on the same feeds; compare each with the baseline."""
    import onnx

    options = options or VerifyOptions()
    model = onnx.load(str(model_path), load_external_data=False)
    input_names = [vi.name for vi in model.graph.input]
    feeds = _feeds(model, input_names, options)
    if options.save_inputs:
        save_npz(options.save_inputs, feeds)
    explicit = options.tolerances is not None
    tolerances = options.tolerances or Tolerances(default_tolerance(model_precision(model)))
    baseline_name = options.baseline or ("torch" if ckpt is not None else "onnxruntime-cpu")
    baseline = (SavedOutputsRunner(options.expected, input_names) if options.expected
                else make_runner(baseline_name, model_path, ckpt, input_names, options))
    names, known_wrong = _runner_names(options.runners, ckpt is not None, model)
    names = [n for n in names if n != baseline.name]
    report = VerifyReport(ParityReport(baseline.name, inputs={k: list(v.shape) for k, v in feeds.items()}),
                          strict_placement=options.strict_placement)
    try:
        with baseline:
            expected = baseline.infer(feeds)
    except RunnerError as exc:
        raise ValueError(f"baseline {baseline.name} cannot run: {exc}") from None
    _note_placement(report, baseline, model)
    outputs = [vi.name for vi in model.graph.output]
    missing = [n for n in outputs if n not in expected]
    if missing:
        raise ValueError(f"baseline {baseline.name} has no output(s) {missing}; it has {sorted(expected)}")
    expected = {n: expected[n] for n in outputs}
    if options.save_outputs:
        save_npz(options.save_outputs, expected)
    failing = {}
    for name in names:
        actual = _run_one(report, name, model_path, ckpt, input_names, options, feeds, model)
        if actual is None:
            continue
        runner_name, actual, runner = actual
        rows = compare_outputs(runner_name, actual, expected, _runner_tolerances(runner, tolerances, explicit),
                               outputs)
        for row in rows:
            row.known_wrong = known_wrong.get(name, "")
        report.parity.rows += rows
        if not all(r.passed for r in rows):
            failing[runner_name] = actual
    from lstm_onnx.runtimes.diagnose import dropped_peepholes

    report.parity.warnings += dropped_peepholes(model, feeds, failing, tolerances)
    return report


def capability_key(runner: str) -> str | None:
    for prefix, key in CAPABILITY_KEYS.items():
        if runner.startswith(prefix):
            return key
    return None


def _runner_names(requested, with_checkpoint: bool, model) -> tuple[list[str], dict[str, str]]:
    """The runners to run, and {runner: why} for those the capability table expects to be wrong here.

    Naming runners (other than `all`) makes every failure count: the user asked for exactly those.
    """
    every = list(RUNNERS if with_checkpoint else MODEL_RUNNERS)
    if requested and "all" not in requested:
        return list(requested), {}
    names = every + [r for r in (requested or ()) if r not in every and r != "all"]
    from lstm_onnx.runtimes.capabilities import native_support, runtime

    problems = native_support(model)
    known_wrong = {}
    for name in names:
        key = capability_key(name)
        wrong = [p for p in problems.get(key, []) if p.endswith(": wrong")] if key else []
        if wrong:
            known_wrong[name] = f"{'; '.join(wrong)}; export --form {runtime(key).fallback} for this runtime"
    return names, known_wrong


def _feeds(model, input_names, options):
    if options.inputs is None:
        return model_feeds(model, options.batch, options.seq, options.seed)
    feeds = load_npz(options.inputs, "inputs")
    if set(feeds) != set(input_names):
        raise ValueError(f"{options.inputs} holds {sorted(feeds)}; the model's inputs are {sorted(input_names)}")
    return feeds


def _run_one(report, name, model_path, ckpt, input_names, options, feeds, model):
    try:
        runner = make_runner(name, model_path, ckpt, input_names, options)
        with runner:
            actual = runner.infer({k: feeds[k] for k in runner.input_names})
    except RunnerUnavailable as exc:
        report.parity.skipped[name] = f"unavailable ({exc})"
        return None
    except (RunnerError, KeyError) as exc:
        report.parity.errors[name] = str(exc)
        return None
    _note_placement(report, runner, model)
    if getattr(runner, "uses_tf32", False):
        report.parity.warnings.append(f"{runner.name} ran with TF32 matmuls; compared at the tf32 tolerance")
    return runner.name, actual, runner


def _note_placement(report: VerifyReport, runner: Runner, model) -> None:
    from lstm_onnx.runtimes.placement import fallback_warnings

    placements = getattr(runner, "placements", None)
    if not placements:
        return
    report.placements[runner.name] = placements
    problems = fallback_warnings(runner.name, runner.requested_provider, runner.provider, placements, model)
    report.placement_problems += problems
    report.parity.warnings += problems


def verify_checkpoint(ckpt, model_path, runners=CPU_RUNNERS, batch: int = 4, seq: int = 23, seed: int = 0,
                      tolerances: Tolerances | None = None) -> VerifyReport:
    """verify_model with the checkpoint's torch model as the baseline, by default on the runners that
    every CPU machine has (a shorthand for tests and scripts)."""
    return verify_model(model_path, ckpt, VerifyOptions(runners=tuple(runners), batch=batch, seq=seq, seed=seed,
                                                        tolerances=tolerances))


def explicit_tolerances(atol: float | None, rtol: float | None, precision: str = "float32") -> Tolerances | None:
    """Tolerances from --atol/--rtol (the other one from the table), or None to choose by the model."""
    if atol is None and rtol is None:
        return None
    base = default_tolerance(precision)
    return Tolerances(Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol))
