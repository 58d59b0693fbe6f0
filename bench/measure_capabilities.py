"""The capability table (runtimes/capabilities.py), measured on this machine: for each feature a small model
that needs exactly that feature, run on every installed runtime and compared with the float64 numpy
reference (runtimes/numpy_ref) computed from the same weights. `lstm-pipeline capabilities --measure`.
"""
from __future__ import annotations

import contextlib
import importlib
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstm_onnx.core import machine
from lstm_onnx.runtimes import capabilities as cap
from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.base import RunnerRefused, RunnerUnavailable, error_message
from lstm_onnx.runtimes.compare import Tolerances, compare_outputs
from lstm_onnx.runtimes.tolerances import default_tolerance

BATCH, SEQ, INPUT, HIDDEN = 4, 23, 3, 8
ORT_DEFAULT_SEVERITY = 2  # onnxruntime's default logger: warnings and up (it has no getter)
PEEPHOLE_GAIN = 4.0  # P x4 over its U(-1/4, 1/4) init: a runtime that drops P cannot stay in tolerance

# feature -> (with P, export options, precision of the tolerance). Each model needs exactly its feature
# (checked when it is built); the native LSTM without P needs none. Each is measured with and without initial
# states as inputs (the graphs differ: OpenCV takes one float16 graph and refuses the other), and the cell is
# the worse of the two.
FEATURE_MODELS = {
    "peepholes": (True, dict(form="native"), "float32"),
    "sequence_lens": (False, dict(form="native", lengths=True), "float32"),
    "layout_1": (False, None, "float32"),  # no export writes layout=1: one hand-built node (layout_1_model)
    "scan": (False, dict(form="decomposed"), "float32"),
    "float16": (False, dict(form="unrolled", dtype="float16", seq_len=SEQ, batch_size=BATCH), "float16"),
    # An int8 export's LSTMs are DynamicQuantizeLSTM nodes, P included: the int8 cell covers them whole.
    "int8": (True, dict(form="native", quantize="int8"), "int8"),
}
# runtime key -> (module whose __version__ it runs on, the name to show)
VERSION_OF = {"onnxruntime-cpu": ("onnxruntime", "onnxruntime"), "onnxruntime-cuda": ("onnxruntime", "onnxruntime"),
              "onnxruntime-tensorrt": ("onnxruntime", "onnxruntime"), "openvino-cpu": ("openvino", "openvino"),
              "onnx-reference": ("onnx", "onnx"), "opencv": ("cv2", "opencv"),
              "onnx2torch": ("onnx2torch", "onnx2torch")}
# How the u8 x s8 integer GEMM behind int8 sums, by the best extension the CPU has: VNNI sums exactly in
# int32; without it, pairs of products are summed in saturating int16 lanes.
INT8_ISAS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2")


def int8_isa(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The instruction-set extension this CPU's int8 GEMMs run on (INT8_ISAS, best first), from the flags
    core/machine.py reads; the machine type where there are none and it is not x86."""
    isa = machine.cpu_info(cpuinfo)["isa"]
    if not isa and platform.machine() not in ("x86_64", "AMD64", "i686", "i386"):
        return platform.machine() or "unknown"
    return next((f for f in INT8_ISAS if f in isa), "no avx2")


def installed_version(key: str) -> str:
    """`name version` of the package that runtime `key` runs on here; '' if it is not installed."""
    module, name = VERSION_OF[key]
    try:
        version = getattr(importlib.import_module(module), "__version__", "?")
    except ImportError:
        return ""
    return f"{name} {version.split('-')[0]}"


@dataclass
class Cell:
    value: str  # one of the table's cells: yes, wrong, refused, on CPU
    detail: str  # the error, or the max abs difference to the numpy reference


@dataclass
class Measured:
    """One runtime's row as measured here: cells by FEATURES key."""

    key: str
    version: str
    isa: str
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    key: str
    feature: str
    stored: str
    measured: str
    detail: str

    def line(self) -> str:
        return (f"{self.key}: {cap.FEATURES[self.feature]}: stored {self.stored}, measured {self.measured} "
                f"({self.detail})")


@dataclass(frozen=True)
class FeatureModel:
    feature: str
    path: Path
    feeds: dict
    expected: dict  # output name -> the float64 numpy reference
    tolerance: Tolerances
    stateful: bool


def _checkpoint(peephole: bool):
    from lstm_onnx.bench.models import random_checkpoint

    ckpt = random_checkpoint(INPUT, HIDDEN, peephole=peephole, output_size=2, head="sequence", seed=3)
    for name, value in ckpt.state_dict.items():
        if "peephole" in name:
            value.mul_(PEEPHOLE_GAIN)
    return ckpt


def layout_1_model(ckpt, stateful: bool = True):
    """One LSTM node with layout=1 (batch-major X, Y and states) holding the checkpoint's first layer, initial
    states as inputs if `stateful`, and a function of the feeds giving its outputs from the numpy equations."""
    from onnx import TensorProto, helper, numpy_helper

    from lstm_onnx.core.gates import reorder_gates
    from lstm_onnx.runtimes.numpy_ref import float64_state, lstm_direction

    sd, H = float64_state(ckpt.state_dict), HIDDEN
    W, R = sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"]
    b = sd["lstm.bias_ih_l0"] + sd["lstm.bias_hh_l0"]
    onnx_b = np.concatenate([reorder_gates(sd["lstm.bias_ih_l0"]), reorder_gates(sd["lstm.bias_hh_l0"])])
    inits = [numpy_helper.from_array(a[None].astype(np.float32), n)
             for n, a in (("W", reorder_gates(W)), ("R", reorder_gates(R)), ("B", onnx_b))]
    vi = helper.make_tensor_value_info
    states = ["h0", "c0"] if stateful else []
    node = helper.make_node("LSTM", ["x", "W", "R", "B", ""] + (states or ["", ""]), ["y", "hn", "cn"],
                            hidden_size=H, layout=1, name="lstm")
    graph = helper.make_graph(
        [node], "layout1", [vi("x", TensorProto.FLOAT, ["batch", "seq", INPUT])]
        + [vi(n, TensorProto.FLOAT, ["batch", 1, H]) for n in states],
        [vi("y", TensorProto.FLOAT, ["batch", "seq", 1, H])] + [vi(n, TensorProto.FLOAT, ["batch", 1, H])
                                                                 for n in ("hn", "cn")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    def reference(feeds):
        x = np.swapaxes(feeds["x"].astype(np.float64), 0, 1)  # [S, B, I]
        zeros, start = np.zeros(H), np.zeros((x.shape[1], H))
        h0, c0 = (feeds[n][:, 0].astype(np.float64) if stateful else start for n in ("h0", "c0"))
        y, h, c = lstm_direction(x, W, R, b, (zeros,) * 3, h0, c0, np.full(x.shape[1], x.shape[0]), False)
        return {"y": np.swapaxes(y, 0, 1)[:, :, None], "hn": h[:, None], "cn": c[:, None]}
    return model, reference


def build_feature_model(feature: str, folder: Path, stateful: bool = True) -> FeatureModel:
    """The model that needs exactly `feature`, saved in `folder`, with random feeds and the numpy reference."""
    import onnx

    from lstm_onnx.exporters.export import ExportOptions, build_model
    from lstm_onnx.exporters.precision import quantize_int8
    from lstm_onnx.runtimes.numpy_ref import NumpyRunner
    from lstm_onnx.runtimes.onnx_graph import graph_inputs
    from lstm_onnx.runtimes.verify import model_feeds

    peephole, options, precision = FEATURE_MODELS[feature]
    ckpt = _checkpoint(peephole)
    if options is None:
        model, reference = layout_1_model(ckpt, stateful)
    else:
        options = dict(options, stateful=stateful)
        quantize = options.pop("quantize", None)
        model = build_model(ckpt, ExportOptions(**options))
        if quantize:
            model = quantize_int8(model)
        reference = None
    needs = cap.model_features(model)
    if needs != [feature]:
        raise AssertionError(f"the {feature} model needs {needs}, not exactly [{feature!r}]")
    path = folder / f"{feature}{'-stateful' if stateful else ''}.onnx"
    onnx.save(model, path)
    feeds = model_feeds(model, BATCH, SEQ, seed=1)
    if reference is None:
        with NumpyRunner(ckpt.state_dict, ckpt.model_config, [vi.name for vi in graph_inputs(model.graph)]) as ref:
            expected = ref.infer(feeds)
    else:
        expected = reference(feeds)
    expected = {vi.name: expected[vi.name] for vi in model.graph.output}  # without states: y alone
    return FeatureModel(feature, path, feeds, expected, Tolerances(default_tolerance(precision)), stateful)


def _runner(key: str, path: Path):
    if key == "onnx-reference":  # the evaluator itself, without the refusals our runner adds
        from lstm_onnx.runtimes.onnx_reference import OnnxReferenceRunner

        return OnnxReferenceRunner(path, refuse_ignored=False)
    return registry.make(key, registry.Request(path))


def measure_cell(key: str, fm: FeatureModel, runner=None) -> Cell:
    """Runtime `key` on one feature's model: refused (any error), wrong (outside tolerance), on CPU (an LSTM
    placed off the requested device), else yes. RunnerUnavailable propagates (the runtime is not here)."""
    runner = runner or _runner(key, fm.path)
    try:
        with runner:
            got = runner.infer(fm.feeds)
    except RunnerRefused as exc:  # the runner's own refusal, e.g. onnx.reference has no kernel for the op
        return Cell(cap.REFUSED, str(exc))
    except RunnerUnavailable:
        raise
    except Exception as exc:  # any runtime's own error type: that is what refused means
        return Cell(cap.REFUSED, error_message(exc))
    rows = compare_outputs(key, got, fm.expected, fm.tolerance, list(fm.expected))
    worst = max((r.max_abs for r in rows), default=float("nan"))
    if not rows or not all(r.passed for r in rows):
        failed = [r.output for r in rows if not r.passed] or ["every output missing"]
        return Cell(cap.WRONG, f"{', '.join(failed)} outside tolerance, max abs {worst:.2g}")
    if _placed_off_device(runner):
        return Cell(cap.CPU, f"max abs {worst:.2g}; a node ran off the requested provider")
    return Cell(cap.YES, f"max abs {worst:.2g}")


def _placed_off_device(runner) -> bool:
    """Whether ORT ran a node of the model elsewhere than on the provider it was asked for."""
    from lstm_onnx.runtimes.placement import fallbacks

    placements = getattr(runner, "placements", None)
    return bool(placements) and bool(fallbacks(runner.requested_provider, placements))


WORST_FIRST = (cap.WRONG, cap.REFUSED, cap.CPU, cap.YES)


def worse(a: Cell, b: Cell) -> Cell:
    return min(a, b, key=lambda c: WORST_FIRST.index(c.value))


@contextlib.contextmanager
def _ort_log_off():
    """Refusals are what is measured, and each cell keeps its one line: ORT's own log line about a model it
    refuses (layout=1) would only repeat it on stderr."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # fatal only
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(ORT_DEFAULT_SEVERITY)


def installed_runtimes() -> list[str]:
    """The capability rows that a runner here can measure: their runtime is installed and loads."""
    keys = []
    for key in cap.RUNTIMES:
        info = registry.RUNNERS.get(key)
        if info is not None and (info.probe is None or info.probe() is None):
            keys.append(key)
    return keys


def measure(keys=None, features=None, log=lambda message: None) -> dict[str, Measured]:
    """Every feature's model on every installed runtime (or `keys`), by runtime key."""
    keys = installed_runtimes() if keys is None else list(keys)
    features = list(features or cap.FEATURES)
    isa = int8_isa()
    result = {key: Measured(key, installed_version(key), isa) for key in keys}
    with tempfile.TemporaryDirectory(prefix="lstm-capabilities-") as tmp, _ort_log_off():
        for feature in features:
            for stateful in (False, True):
                fm = build_feature_model(feature, Path(tmp), stateful)
                for key in keys:
                    try:
                        cell = measure_cell(key, fm)
                    except RunnerUnavailable as exc:
                        log(f"{key}: unavailable ({exc})")
                        continue
                    cell.detail = ("with" if stateful else "without") + f" initial states: {cell.detail}"
                    log(f"{key}: {cap.FEATURES[feature]}: {cell.value} ({cell.detail})")
                    cells = result[key].cells
                    cells[feature] = worse(cells[feature], cell) if feature in cells else cell
    return result


def differences(measured: dict[str, Measured], stored=None) -> list[Difference]:
    """Each measured cell that the stored table (capabilities.RUNTIMES) says otherwise of."""
    stored = cap.RUNTIMES if stored is None else stored
    return [Difference(key, f, getattr(stored[key], f), cell.value, cell.detail)
            for key, row in measured.items() for f, cell in row.cells.items() if getattr(stored[key], f) != cell.value]


_REFUSED = Cell(cap.REFUSED, "")


def as_rows(measured: dict[str, Measured]) -> dict[str, cap.Runtime]:
    """The measured rows as the table's Runtime rows (a cell not measured keeps the stored one)."""
    import dataclasses

    return {key: dataclasses.replace(cap.RUNTIMES[key], measured_on=m.version,
                                     int8_isa=m.isa if m.cells.get("int8", _REFUSED).value != cap.REFUSED else "",
                                     **{f: c.value for f, c in m.cells.items()})
            for key, m in measured.items()}


def report(measured: dict[str, Measured]) -> str:
    """The measured table, the rows not measured here, and each difference from the stored table."""
    found = differences(measured)
    lines = [f"measured here (int8 on {int8_isa()}):", cap.render_text(as_rows(measured))]
    absent = [key for key in cap.RUNTIMES if key not in measured]
    if absent:
        lines.append(f"not installed here, not measured: {', '.join(absent)}")
    lines.append("")
    lines += [d.line() for d in found]
    lines.append(f"{len(found)} difference(s) from the stored table")
    return "\n".join(lines)


def to_dict(measured: dict[str, Measured]) -> dict:
    return {"measured": {key: {"version": m.version, "int8_isa": m.isa,
                               "cells": {f: {"cell": c.value, "detail": c.detail} for f, c in m.cells.items()}}
                         for key, m in measured.items()},
            "differences": [vars(d) for d in differences(measured)]}
