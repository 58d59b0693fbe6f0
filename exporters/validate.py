"""Validation that runs before an export is written: checker, symbolic (or static) dims, parity with torch.

Dynamic forms are checked at sizes no example uses, which proves the batch and sequence axes really are
dynamic; a static-shape form (unrolled) has one size, and is checked there.
"""
from __future__ import annotations

import onnx

from lstm_onnx.core.probe import is_probe
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.runtimes.compare import Tolerances
from lstm_onnx.runtimes.feeds import onnx_input_shapes, random_feeds
from lstm_onnx.runtimes.int8_gemm import EmulatedInt8Runner
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from lstm_onnx.runtimes.parity import run_parity
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.runtimes.torch_ref import TorchRunner

CHECK_SIZES = ((3, 7), (5, 13))


class ValidationError(ValueError):
    pass


def _frozen_axes(model: onnx.ModelProto):
    """(name, axes, dims) of x's batch/seq axes and each output's batch axis that have a fixed size."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        frozen = [i for i, d in enumerate(dims) if not d.dim_param and vi.name in ("x", "y")
                  and i < (2 if vi.name == "x" else 1)]
        if frozen:
            yield vi.name, frozen, [d.dim_value for d in dims]


def check_symbolic_dims(model: onnx.ModelProto) -> None:
    """x's batch and seq axes, and every output's batch axis, must be symbolic (not frozen to a size)."""
    for name, frozen, dims in _frozen_axes(model):
        raise ValidationError(f"{name} has fixed size on axis {frozen}: {dims}; "
                              "batch and sequence axes must be dynamic")


def check_static_dims(model: onnx.ModelProto, batch: int, seq: int, batch_first: bool) -> None:
    """Every input and output dim of a static-shape export is a number, and x is [batch, seq]."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if any(d.dim_param or not d.dim_value for d in dims):
            raise ValidationError(f"{vi.name} has a symbolic dim {[d.dim_param or d.dim_value for d in dims]}; "
                                  "this form's shapes must all be static")
    x = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    want = [batch, seq] if batch_first else [seq, batch]
    if x[:2] != want:
        raise ValidationError(f"x is {x}, expected {want + x[2:]} for batch {batch}, seq {seq}")


def validate_model(model: onnx.ModelProto, ckpt, options, precision: str = "float32") -> None:
    """`options` must be resolved (exporters.export.resolve_options); `precision` picks the tolerance."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"onnx.checker rejected the export: {str(exc).splitlines()[0]}") from None
    if FORMS[options.form].static_shapes:
        check_static_dims(model, options.batch_size, options.seq_len, ckpt.model_config.batch_first)
        sizes = ((options.batch_size, options.seq_len),)
    else:
        check_symbolic_dims(model)
        sizes = CHECK_SIZES
    blob = model.SerializeToString()
    shapes = onnx_input_shapes(model)
    outputs = [o.name for o in model.graph.output if not is_probe(o.name)]  # traces: tests/exporters/test_probe.py
    tolerances = Tolerances(default_tolerance(precision))
    # int8 also runs as a CPU without VNNI would (int16 pair sums), whichever kind this one is
    runners = lambda: [OnnxRuntimeRunner(blob)] + ([EmulatedInt8Runner(model, "avx2")]  # noqa: E731
                                                   if precision == "int8" else [])
    for batch, seq in sizes:
        feeds = random_feeds(shapes, batch, seq, seed=batch)
        report = run_parity(TorchRunner(ckpt.build_model(), list(shapes)), runners(), feeds,
                            tolerances, outputs=outputs)
        if not report.passed:
            raise ValidationError(f"exported model disagrees with PyTorch at batch {batch}, seq {seq} "
                                  f"({precision}):\n" + report.to_table())
