"""verify: any ONNX model with LSTM nodes, on every available runner, against a baseline.

The baseline is a runner (default: torch with a checkpoint, else ORT CPU) or saved outputs (.npz, Polygraphy
.json: runtimes/polygraphy_io.py, or ONNX test data: runtimes/verify_data_sets.py). Runner names are
runtimes/registry.py's. Each runner's load, compile and run is contained: a runner that cannot run the model is
reported, never a traceback. What counts (see `Expectation`): a runner named with --runner always counts, unless
it fails where the table says it refuses the model (a skip); otherwise one counts only where the capability table
says it computes this model right, and the table's own verdict (wrong, refused, untested) explains a failure
instead of failing the run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstm_onnx.core.machine import fingerprint, summary
from lstm_onnx.core.probe import is_probe
from lstm_onnx.core.tables import grid
from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.base import Runner, RunnerRefused, RunnerUnavailable, error_message
from lstm_onnx.runtimes.compare import ELEMWISE, STAT_HEAD, ParityReport, Tolerances, compare_outputs, row_cells
from lstm_onnx.runtimes.feeds import onnx_input_shapes, random_feeds
from lstm_onnx.runtimes.onnx_graph import graph_inputs, load_model
from lstm_onnx.runtimes.ort_file import is_ort_format
from lstm_onnx.runtimes.saved_arrays import (
    ExpectedArrays,
    read_feeds_file,
    read_outputs_file,
    write_feeds_file,
    write_outputs_file,
)
from lstm_onnx.runtimes.tolerances import Tolerance, default_tolerance

BASELINES = ("onnxruntime-cpu", "onnx-reference")  # without a checkpoint: the first the table lets run the model
PASSED, FAILED, NOTHING_COMPARED = "PASSED", "FAILED", "NOTHING COMPARED"
EXIT_CODES = {PASSED: 0, FAILED: 1, NOTHING_COMPARED: 3}  # 2 is click's usage error


@dataclass
class VerifyOptions:
    runners: tuple[str, ...] | None = None  # None: the registry's verify defaults (checkpoint ones with one)
    baseline: str | None = None  # None: torch with a checkpoint, else the first of BASELINES that fits
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
    save_test_data: str | Path | None = None  # a model folder: model.onnx, the feeds and the baseline's outputs
    error_stat: str = ELEMWISE  # what passes: runtimes/compare.py's ERROR_STATS
    fail_fast: bool = False  # stop at the first failure that counts; the runners left are skipped
    isolate: bool = False  # each runner, the baseline too, in its own process (runtimes/isolate.py)
    runner_timeout: float | None = None  # with isolate: seconds a runner may take (None: isolate's default)
    checkpoint: str | Path | None = None  # with isolate and a checkpoint: its path, for the child processes
    checkpoint_loader: str | None = None  # and "module:function" that loads it (the caller's: runtimes cannot)
    reference: Runner | None = None  # a runner the caller built, as the baseline (verify --module: the user's module)


@dataclass
class VerifyReport:
    parity: ParityReport
    placements: dict = field(default_factory=dict)  # runner -> [NodePlacement]
    placement_problems: list[str] = field(default_factory=list)
    strict_placement: bool = False
    uncounted_errors: dict[str, str] = field(default_factory=dict)  # runner in parity.errors -> why it does not count
    localisation: dict = field(default_factory=dict)  # failing runner -> runtimes/localise.py's finding
    machine: dict = field(default_factory=fingerprint)  # where it ran (core/machine.py)

    @property
    def counted_errors(self) -> dict[str, str]:
        return {n: why for n, why in self.parity.errors.items() if n not in self.uncounted_errors}

    @property
    def status(self) -> str:
        """FAILED on any failure that counts; else PASSED if a runner that counts was compared; else NOTHING
        COMPARED (every runner skipped, unable to run, or one the capability table does not vouch for)."""
        if self.failures():
            return FAILED
        return PASSED if any(not r.known_wrong for r in self.parity.rows) else NOTHING_COMPARED

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def failures(self) -> list[str]:
        """Why the run fails, one line each ([] if it does not)."""
        out = [f"{r.runner} {r.output}: {_mismatch(r)}" for r in self.parity.rows if not r.passed and not r.known_wrong]
        out += [f"{n}: ERROR: {why}" for n, why in self.counted_errors.items()]
        if self.strict_placement:
            out += [f"--strict-placement: {p}" for p in self.placement_problems]
        return out

    # ParityReport's fields, for callers that treat this as one
    reference = property(lambda self: self.parity.reference)
    rows = property(lambda self: self.parity.rows)
    skipped = property(lambda self: self.parity.skipped)
    errors = property(lambda self: self.parity.errors)
    warnings = property(lambda self: self.parity.warnings)

    def to_dict(self) -> dict:
        from lstm_onnx.runtimes.placement import summarize, to_dicts

        d = self.parity.to_dict()
        d.update(passed=self.passed, status=self.status, exit_code=self.exit_code, failures=self.failures(),
                 uncounted_errors=self.uncounted_errors, strict_placement=self.strict_placement,
                 placement={r: {"summary": summarize(p), "nodes": to_dicts(p)} for r, p in self.placements.items()},
                 placement_problems=self.placement_problems, localisation=self.localisation,
                 machine=self.machine)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)

    def to_table(self) -> str:
        return self._render(markdown=False)

    def to_markdown(self) -> str:
        return self._render(markdown=True)

    def _render(self, markdown: bool) -> str:
        p = self.parity
        h2, h3 = ("## ", "### ") if markdown else ("", "")
        out = [f"{h2}parity against {p.reference}  (inputs {p.inputs})", summary(self.machine)]
        for output in dict.fromkeys(r.output for r in p.rows):
            rows = [[r.runner, *row_cells(r)] for r in p.rows if r.output == output]
            out += ["", f"{h3}output {output}"]
            out += grid(["runner", *STAT_HEAD, "atol/rtol", "result"], rows, markdown)
        if p.errors or p.skipped:
            out += ["", f"{h3}not compared"]
            rows = [[n, self._error_text(n, w)] for n, w in p.errors.items()]
            rows += [[n, f"skipped: {w}"] for n, w in p.skipped.items()]
            out += grid(["runner", "why"], rows, markdown)
        if self.placements:
            from lstm_onnx.runtimes.placement import summarize

            out += ["", f"{h3}placement (from ORT profiling)"]
            rows = [[r, ", ".join(f"{prov}: {n}" for prov, n in summarize(pl).items()),
                     ", ".join(f"{x.op_type}@{x.provider.replace('ExecutionProvider', '')}" for x in pl
                               if x.op_type == "LSTM") or "-"]
                    for r, pl in self.placements.items()]
            out += grid(["runner", "nodes per provider", "LSTM nodes"], rows, markdown)
        if self.localisation:
            from lstm_onnx.runtimes.localise import to_lines

            out += ["", f"{h3}where it departs"] + to_lines(self.localisation)
        warn = "> **Warning:** " if markdown else "WARNING: "
        out += [""] + [warn + w for w in p.warnings] if p.warnings else []
        return "\n".join(out + [""] + self._verdict(markdown))

    def _error_text(self, runner: str, message: str) -> str:
        why = self.uncounted_errors.get(runner)
        return f"ERROR (not counted: {why}): {message}" if why else f"ERROR: {message}"

    def _verdict(self, markdown: bool) -> list[str]:
        status = f"**{self.status}**" if markdown else self.status
        if self.status == FAILED:
            return [status + ":"] + [f"- {f}" for f in self.failures()]
        if self.status == NOTHING_COMPARED:
            return [f"{status}: no runner that counts was compared with the baseline: each was skipped, could "
                    f"not run, or is one the capability table does not vouch for here (see above); name an "
                    f"available runner with --runner"]
        return [status]


def _mismatch(row) -> str:
    if row.note:
        return row.note
    return f"max abs {row.max_abs:.3g} over atol {row.atol:g} + rtol {row.rtol:g}·|baseline|"


ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64}
MAX_FEED_VALUES = 1 << 26  # per input, for generated feeds: --batch x --seq x features
BATCH_WORDS, SEQ_WORDS = ("batch", "n", "b"), ("seq", "len", "time", "step", "s", "t")


def model_feeds(model, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Random feeds for any model: symbolic dims named like batch/seq get those sizes; dtypes follow the model."""
    batch, seq = _static_sizes(model, batch, seq)
    names = {vi.name for vi in graph_inputs(model.graph)}
    shapes = {}
    for name, dims in onnx_input_shapes(model).items():
        if name in names:
            shapes[name] = [_size_name(d, name) if isinstance(d, str) or d == 0 else d for d in dims]
    for name, dims in shapes.items():
        values = int(np.prod([{"batch": batch, "seq": seq}.get(d, d) for d in dims], dtype=np.float64))
        if values > MAX_FEED_VALUES:
            raise ValueError(f"--batch {batch} x --seq {seq} makes {values} values of input {name!r}; at most "
                             f"{MAX_FEED_VALUES}: lower --batch or --seq")
    feeds = random_feeds(shapes, batch, seq, seed)
    for vi in graph_inputs(model.graph):
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


def check_feeds(model, feeds: dict[str, np.ndarray], source) -> dict[str, tuple[int, str]]:
    """ValueError, saying how to fix it, unless each feed has its input's dtype, rank and static dims, and
    each symbolic dim one size across the feeds. Returns those sizes (dim -> (size, input))."""
    sizes: dict[str, tuple[int, str]] = {}
    for vi in graph_inputs(model.graph):
        name, value = vi.name, np.asarray(feeds[vi.name])
        want = ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
        if want is not None and value.dtype != want:
            kind = np.dtype(want).name
            raise ValueError(f"{source}: input {name!r} is {value.dtype}; the model takes {kind} "
                             f"(save it with array.astype(np.{kind}))")
        _check_shape(vi, value, sizes, source, "input")
    return sizes


def check_expected(model, expected: dict[str, np.ndarray], sizes: dict, source) -> None:
    """ValueError unless the saved outputs hold each model output, as real numbers of its shape (symbolic
    dims as in the feeds)."""
    for vi in model.graph.output:
        if vi.name not in expected:
            raise ValueError(f"{source} holds {sorted(expected)}; the model's outputs are "
                             f"{[o.name for o in model.graph.output]}: no {vi.name!r}")
        value = expected[vi.name]
        if value.dtype.kind not in "iuf":
            raise ValueError(f"{source}: output {vi.name!r} is {value.dtype}; expected real numbers")
        _check_shape(vi, value, sizes, source, "output")


def _check_shape(vi, value: np.ndarray, sizes: dict, source, what: str) -> None:
    name, verb = vi.name, "takes" if what == "input" else "gives"
    dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    if value.ndim != len(dims):
        raise ValueError(f"{source}: {what} {name!r} has shape {list(value.shape)}; the model {verb} "
                         f"{len(dims)} dims {dims}")
    for dim, size in zip(dims, value.shape):
        if isinstance(dim, int) and dim > 0 and dim != size:
            raise ValueError(f"{source}: {what} {name!r} has shape {list(value.shape)}; the model {verb} {dims}")
        if isinstance(dim, str):
            seen, where = sizes.setdefault(dim, (size, name))
            if seen != size:
                raise ValueError(f"{source}: dim {dim!r} is {size} in {name!r} but {seen} in {where!r}; "
                                 f"they must agree")


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


@dataclass(frozen=True)
class Expectation:
    """What the capability table says of a runner on this model, where it is not simply right: `verdict` is
    the worst of its cells (wrong, refused, untested); `why` names them and the form to export instead."""

    verdict: str
    why: str
    cells: dict = field(default_factory=dict)  # feature -> cell, for the cells that are not simply right


def expectation(runner: str, needs: list[str]) -> Expectation | None:
    """None where the table says the runner computes a model that `needs` these features right (cells yes or
    `on CPU`), or the runner is no ONNX runtime (numpy, torch: they read the checkpoint)."""
    from lstm_onnx.runtimes import capabilities as cap

    key = registry.get(runner).capability
    if key is None:
        return None
    cells = {f: c for f, c in cap.shortfalls(key, needs).items() if c != cap.CPU}
    if not cells:
        return None
    verdict = next((v for v in (cap.WRONG, cap.REFUSED) if v in cells.values()), cap.UNTESTED)
    listed = "; ".join(f"{cap.FEATURES[f]}: {c}" for f, c in cells.items())
    return Expectation(verdict, f"{listed}; export --form {cap.runtime(key).fallback} for this runtime", cells)


def make_runner(name: str, model_path, ckpt, input_names: list[str], options: VerifyOptions) -> Runner:
    """The registry's runner `name` for this model (an old spelling works too); UnknownRunner (a ValueError)
    if there is no such runner. With options.isolate, a runner that runs in its own process."""
    request = registry.Request(model_path, ckpt, list(input_names), options.provider_options, options.allow_tf32)
    if options.isolate:
        from lstm_onnx.runtimes.isolate import DEFAULT_TIMEOUT, isolated_runner

        registry.get(name)  # an unknown name fails here, as in-process
        return isolated_runner(name, request, options.checkpoint, options.checkpoint_loader,
                               options.runner_timeout or DEFAULT_TIMEOUT)
    return registry.make(name, request)


def _runner_tolerances(runner: Runner, base: Tolerances, explicit: bool) -> Tolerances:
    if getattr(runner, "uses_tf32", False) and not explicit:
        # TF32 keeps 10 mantissa bits: float32 tolerances would flag the expected ~2.5e-4 drift.
        return Tolerances(default_tolerance("tf32"))
    return base


def verify_model(model_path, ckpt=None, options: VerifyOptions | None = None) -> VerifyReport:
    """Run the baseline and every runner on the same feeds; compare each with the baseline. Raises ValueError
    (one line: what to fix) for bad options or inputs, or a baseline that cannot run; never for a runner."""
    from lstm_onnx.runtimes.capabilities import model_features

    options = options or VerifyOptions()
    if options.isolate and ckpt is not None and not (options.checkpoint and options.checkpoint_loader):
        raise ValueError("isolate with a checkpoint: give VerifyOptions.checkpoint (its path) and checkpoint_loader")
    model = load_model(model_path)
    needs = model_features(model)
    input_names = [vi.name for vi in graph_inputs(model.graph)]
    names, named = _runner_names(options.runners, ckpt is not None)
    ort_format = is_ort_format(model_path)
    if ort_format and ckpt is None and not options.expected and not options.baseline:
        raise ValueError(f"{model_path} is in ORT format, which only onnxruntime reads: verify it against its "
                         f"checkpoint (verify model.pt {Path(model_path).name}) or saved outputs (--expected)")
    feeds = _feeds(model, input_names, options)
    if options.save_inputs:
        write_feeds_file(options.save_inputs, feeds)
    explicit = options.tolerances is not None
    tolerances = options.tolerances or Tolerances(default_tolerance(model_precision(model)))
    if isinstance(options.expected, dict):  # a test data set's outputs, checked as it was read
        baseline_name = ExpectedArrays.name
        build_baseline = lambda: ExpectedArrays(options.expected, input_names)  # noqa: E731
    elif options.expected:
        saved = read_outputs_file(options.expected)
        # Its own one-line errors, before anything runs.
        check_expected(model, saved, _feed_sizes(model, feeds), options.expected)
        baseline_name = f"expected:{Path(options.expected).name}"
        build_baseline = lambda: ExpectedArrays(saved, input_names, baseline_name)  # noqa: E731
    elif options.reference is not None:
        baseline_name = options.reference.name
        build_baseline = lambda: options.reference  # noqa: E731
    else:
        baseline_name = _baseline_name(options, ckpt, needs)
        build_baseline = lambda: make_runner(baseline_name, model_path, ckpt, input_names, options)  # noqa: E731
    report = VerifyReport(ParityReport(baseline_name, inputs={k: list(v.shape) for k, v in feeds.items()}),
                          strict_placement=options.strict_placement)
    if ort_format:
        report.parity.skipped.update({n: "reads .onnx only; this file is in ORT format" for n in names
                                      if n in named and not reads_ort_format(n)})
        names = [n for n in names if reads_ort_format(n)]
    if baseline_name in names and baseline_name in named:
        report.parity.skipped[baseline_name] = "it is the baseline; compare it with another: --baseline NAME"
    names = [n for n in names if n != baseline_name]
    expected = _run_baseline(report, baseline_name, build_baseline, feeds, model)
    if options.save_outputs:
        write_outputs_file(options.save_outputs, baseline_name, expected)
    if options.save_test_data:
        from lstm_onnx.runtimes.onnx_test_data import write_test_data

        write_test_data(options.save_test_data, model_path, feeds, expected)
    failing = {}
    for i, name in enumerate(names):
        if options.fail_fast and report.failures():
            report.parity.skipped.update({n: "not run: --fail-fast" for n in names[i:]})
            break
        table = expectation(name, needs)
        build = lambda name=name: make_runner(name, model_path, ckpt, input_names, options)  # noqa: E731
        ran = _run_one(report, name, table, name in named, build, feeds, model)
        if ran is None:
            continue
        runner, actual = ran
        rows = compare_outputs(runner.name, actual, expected, _runner_tolerances(runner, tolerances, explicit),
                               list(expected), options.error_stat)
        for row in rows:
            row.known_wrong = table.why if table and name not in named else ""
        report.parity.rows += rows
        if not all(r.passed for r in rows):
            failing[runner.name] = actual
    report.parity.warnings += _diagnose(model, feeds, failing, tolerances, Path(model_path).parent)
    report.localisation = _localise(model, feeds, failing, expected, tolerances, ckpt, Path(model_path).parent,
                                    lambda name, path, f: _rerun(name, path, ckpt, input_names, options, f))
    return report


def reads_ort_format(runner: str) -> bool:
    """ONNX Runtime's runners read .ort files; runners of the checkpoint read no model file at all."""
    info = registry.get(runner)
    return info.family == "onnxruntime" or info.capability is None


def _rerun(name, path, ckpt, input_names, options, feeds) -> dict:
    """Runner `name` on another model file (localisation's copy with the LSTMs' Y exposed)."""
    with make_runner(name, path, ckpt, input_names, options) as runner:
        return runner.infer(feeds)


def _localise(model, feeds, failing, expected, tolerances, ckpt, folder, rerun=None) -> dict:
    from lstm_onnx.runtimes.localise import localise

    try:
        return localise(model, feeds, failing, expected, tolerances, ckpt, folder, rerun) if failing else {}
    except Exception as exc:  # the inference reruns the model on ORT CPU, which may not take it
        return {n: {"measured": [], "note": f"not localised: {error_message(exc)}"} for n in failing}


def _baseline_name(options: VerifyOptions, ckpt, needs: list[str]) -> str:
    if options.baseline:
        return registry.canonical(options.baseline)
    if ckpt is not None:
        return "torch"
    from lstm_onnx.runtimes.capabilities import UNTESTED

    fits = [n for n in BASELINES if (e := expectation(n, needs)) is None or e.verdict == UNTESTED]
    return (fits or BASELINES)[0]


def _run_baseline(report: VerifyReport, name: str, build, feeds, model) -> dict[str, np.ndarray]:
    try:
        baseline = build()
        with baseline:
            expected = baseline.infer(feeds)
    except Exception as exc:  # any runtime's failure: the one line says which baseline and why
        raise ValueError(f"baseline {name} cannot run this model: {error_message(exc)}; "
                         f"choose another with --baseline") from None
    _note_placement(report, baseline, model)
    outputs = [vi.name for vi in model.graph.output]
    missing = [n for n in outputs if n not in expected]
    if missing and all(is_probe(n) for n in missing):  # torch, numpy: the model, not the probe's graph
        report.parity.warnings.append(
            f"baseline {name} computes no gate traces: the probe outputs ({len(missing)}) are not compared; "
            f"without a checkpoint (baseline onnxruntime-cpu) they are, and a departing gate is located")
        outputs = [n for n in outputs if n not in missing]
    elif missing:
        raise ValueError(f"baseline {name} has no output(s) {missing}; it has {sorted(expected)}")
    return {n: expected[n] for n in outputs}


def _runner_names(requested, with_checkpoint: bool) -> tuple[list[str], set[str]]:
    """The runners to run (canonical names), and those named: their failures count whatever the table says.
    `all` is the default set plus the others named. UnknownRunner (a ValueError) for a name there is none of."""
    requested = list(requested or ())
    named = [registry.canonical(n) for n in requested if n != "all"]
    names = named if requested and "all" not in requested else registry.verify_defaults(with_checkpoint) + named
    return list(dict.fromkeys(names)), set(named)


def _feed_sizes(model, feeds) -> dict[str, tuple[int, str]]:
    return check_feeds(model, feeds, "the feeds")


def _feeds(model, input_names, options):
    if isinstance(options.inputs, dict):  # a test data set's, checked as it was read
        return options.inputs
    if options.inputs is None:
        return model_feeds(model, options.batch, options.seq, options.seed)
    feeds = read_feeds_file(options.inputs)
    if set(feeds) != set(input_names):
        raise ValueError(f"{options.inputs} holds {sorted(feeds)}; the model's inputs are {sorted(input_names)}")
    check_feeds(model, feeds, options.inputs)
    return feeds


def _run_one(report: VerifyReport, name: str, table: Expectation | None, named: bool, build, feeds, model):
    """(runner, outputs), or None with the runner recorded as skipped or as an error. Fed by the model's
    input names, whatever the runtime calls them. An error counts if the runner was named or the table
    expects it to run this model right; where the table says it refuses the model, it is skipped."""
    from lstm_onnx.runtimes.capabilities import REFUSED

    try:
        runner = build()
        with runner:
            actual = runner.infer(feeds)
    except RunnerRefused as exc:
        report.parity.skipped[name] = f"refused ({exc})"
        return None
    except RunnerUnavailable as exc:
        report.parity.skipped[name] = f"unavailable ({exc})"
        return None
    except Exception as exc:  # any runtime's own error type: contained, reported in one line
        message = error_message(exc)
        if table and REFUSED in table.cells.values():  # the refusal the table predicts, named or not
            report.parity.skipped[name] = f"refused, as the capability table says ({table.why}): {message}"
            return None
        if table and named:
            message += f" (capability table: {table.why})"
        elif table:
            report.uncounted_errors[name] = f"capability table: {table.why}"
        report.parity.errors[name] = message
        return None
    _note_placement(report, runner, model)
    if getattr(runner, "uses_tf32", False):
        report.parity.warnings.append(f"{runner.name} ran with TF32 matmuls; compared at the tf32 tolerance")
    return runner, actual


def _diagnose(model, feeds, failing: dict, tolerances: Tolerances, folder: Path) -> list[str]:
    from lstm_onnx.runtimes.diagnose import dropped_peepholes

    try:
        return dropped_peepholes(model, feeds, failing, tolerances, folder)
    except Exception as exc:  # the diagnosis reruns the model on ORT CPU, which may not take it
        return [f"could not check whether {', '.join(failing)} dropped P: {error_message(exc)}"]


def _note_placement(report: VerifyReport, runner: Runner, model) -> None:
    from lstm_onnx.runtimes.placement import fallback_warnings

    placements = getattr(runner, "placements", None)
    if not placements:
        return
    report.placements[runner.name] = placements
    problems = getattr(runner, "placement_problems", None)
    if problems is None:
        problems = fallback_warnings(runner.name, runner.requested_provider, runner.provider, placements, model)
    report.placement_problems += problems
    report.parity.warnings += problems


def verify_checkpoint(ckpt, model_path, runners=("numpy", "onnxruntime-cpu", "onnx-reference"), batch: int = 4,
                      seq: int = 23, seed: int = 0, tolerances: Tolerances | None = None) -> VerifyReport:
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
