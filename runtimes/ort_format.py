"""ONNX Runtime's own format (.ort, for mobile and minimal builds) and offline-optimized models.

`convert` writes either through onnxruntime itself (SessionOptions.optimized_model_filepath, with
`session.save_model_format=ORT` for .ort), the same calls `python -m onnxruntime.tools.convert_onnx_models_to_ort`
makes; for .ort it also writes the required-operators config of a reduced build with that tool's own
`create_config_from_models`. Before anything is written, the converted model runs next to the source model
(ORT CPU, no optimization) on the same feeds: a level that moves the results beyond the precision's tolerance is
refused. The op types the level added or removed are reported.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lstm_onnx.runtimes.ort_file import is_ort_format

LEVELS = ("disabled", "basic", "extended", "all")
CONFIG_SUFFIX = ".required_operators.config"
PORTABLE = ["NchwcTransformer"]


class ConversionError(ValueError):
    """The model cannot be converted at this level; the message says why in one line."""


def config_path(out) -> Path:
    """Where the required-operators config of `out` (model.ort) goes: model.required_operators.config."""
    out = Path(out)
    return out.with_name(out.stem + CONFIG_SUFFIX)


@dataclass
class Conversion:
    path: str
    level: str
    ort_format: bool
    config: str | None  # the required-operators config (.ort only)
    max_abs_diff: dict[str, float]  # per output, against the source model (ORT CPU, optimizations off)
    tolerance: dict  # atol, rtol of the precision
    ops_source: dict[str, list[str]]  # domain -> op types
    ops_converted: dict[str, list[str]]
    changes: list[str] = field(default_factory=list)  # "+com.microsoft.FusedGemm", "-Cast": what the level did

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values(), default=0.0)
        lines = [f"wrote {self.path} ({'ORT format' if self.ort_format else 'ONNX'}, optimization {self.level}); "
                 f"max abs diff against the source {worst:.3g} (atol {self.tolerance['atol']:g})"]
        if self.config:
            lines.append(f"wrote {self.config} (required operators for a reduced build)")
        lines.append("op types changed: " + (", ".join(self.changes) if self.changes else "none"))
        return "\n".join(lines)


def graph_ops(model) -> dict[str, list[str]]:
    """domain ("ai.onnx" for the default one) -> sorted op types, subgraphs (Scan bodies) included."""
    from lstm_onnx.runtimes.onnx_graph import all_nodes

    ops: dict[str, set[str]] = {}
    for node in all_nodes(model.graph):
        ops.setdefault(node.domain or "ai.onnx", set()).add(node.op_type)
    return {d: sorted(v) for d, v in sorted(ops.items())}


def read_config(path) -> dict[str, list[str]]:
    """A required-operators config as domain -> sorted op types (opsets merged)."""
    ops: dict[str, set[str]] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            domain, _opset, names = line.split(";")
            ops.setdefault(domain, set()).update(n for n in names.split(",") if n)
    return {d: sorted(v) for d, v in sorted(ops.items())}


def _session_options(level: str, out: Path | None = None, ort_format: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if out is not None:
        so.optimized_model_filepath = str(out)
    if ort_format:
        so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3  # errors only: what matters comes back as exceptions or in the Conversion
    return so


def _session(model, so):
    import onnxruntime as ort

    # The layout transformer NCHWc writes x86-specific nodes; convert_onnx_models_to_ort leaves it out too.
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"], disabled_optimizers=PORTABLE)


def _run(session, feeds) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def convert(model_path, out, level: str = "basic", seq: int = 23, batch: int = 4) -> Conversion:
    """Write `model_path` optimized at `level` to `out`: ORT format if `out` ends in .ort (plus its
    required-operators config), else ONNX. ConversionError if it cannot run or its outputs move."""
    import onnx

    from lstm_onnx.core import metadata
    from lstm_onnx.core.fileio import atomic_path
    from lstm_onnx.runtimes.compare import Tolerances, compare_outputs
    from lstm_onnx.runtimes.onnx_graph import error_message, load_model
    from lstm_onnx.runtimes.tolerances import default_tolerance
    from lstm_onnx.runtimes.verify import model_feeds, model_precision

    if level not in LEVELS:
        raise ConversionError(f"unknown optimization level {level!r}; choose one of {', '.join(LEVELS)}")
    if is_ort_format(model_path):
        raise ConversionError(f"{model_path} is already in ORT format; convert the .onnx it came from")
    out = Path(out)
    ort_format = out.suffix.lower() == ".ort"
    model = load_model(model_path)
    model.metadata_props.add(key=metadata.PREFIX + "optimization", value=level)
    blob = model.SerializeToString()
    feeds = model_feeds(model, batch, seq, seed=0)
    tolerance = default_tolerance(model_precision(model))
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        twin = Path(tmp) / "optimized.onnx"  # the same level as ONNX, to read which ops the level left
        try:
            expected = _run(_session(blob, _session_options("disabled")), feeds)
            _session(blob, _session_options(level, twin))
        except Exception as exc:  # onnxruntime raises its own exception types, one per failure kind
            raise ConversionError(f"onnxruntime cannot load {model_path}: {error_message(exc)}") from None
        converted_ops = graph_ops(onnx.load(str(twin)))
        written = Path(tmp) / ("model.ort" if ort_format else "model.onnx")
        if ort_format:
            _session(blob, _session_options(level, written, ort_format=True))
        else:
            written = twin
        actual = _run(_session(str(written), _session_options("disabled")), feeds)
        rows = compare_outputs("converted", actual, expected, Tolerances(tolerance))
        diffs = {r.output: float(r.max_abs) for r in rows}
        failed = [r.output for r in rows if not r.passed]
        if failed:
            raise ConversionError(f"optimization level {level} changes output(s) {', '.join(failed)} beyond the "
                                  f"{tolerance.atol:g} tolerance (max abs {max(diffs.values()):.3g}); nothing "
                                  f"written: convert at a lower level (--optimize basic)")
        config = None
        if ort_format:
            from onnxruntime.tools.ort_format_model import create_config_from_models

            config_tmp = Path(tmp) / "required_operators.config"
            logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # its INFO line names tmp
            create_config_from_models([written], config_tmp, enable_type_reduction=False)
            config = config_path(out)
            with atomic_path(config) as target:
                target.write_text(config_tmp.read_text().replace(str(written), out.name))
        with atomic_path(out) as target:
            target.write_bytes(written.read_bytes())
    source_ops = graph_ops(model)
    changes = _changes(source_ops, converted_ops)
    return Conversion(str(out), level, ort_format, str(config) if config else None, diffs,
                      {"atol": tolerance.atol, "rtol": tolerance.rtol}, source_ops, converted_ops, changes)


def _changes(before: dict, after: dict) -> list[str]:
    def flat(ops):
        return {f"{d}.{op}" if d != "ai.onnx" else op for d, names in ops.items() for op in names}

    old, new = flat(before), flat(after)
    return [f"+{op}" for op in sorted(new - old)] + [f"-{op}" for op in sorted(old - new)]
