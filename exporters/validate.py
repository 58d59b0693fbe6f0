"""Validation that runs before an export is written: checker, symbolic dims, parity at unseen sizes."""
from __future__ import annotations

import onnx

from runtimes.feeds import onnx_input_shapes, random_feeds
from runtimes.ort import OnnxRuntimeRunner
from runtimes.parity import run_parity
from runtimes.torch_ref import TorchRunner

# Sizes that no export example uses: parity here proves the batch and sequence axes are really dynamic.
CHECK_SIZES = ((3, 7), (5, 13))


class ValidationError(ValueError):
    pass


def check_symbolic_dims(model: onnx.ModelProto) -> None:
    """x's batch and seq axes, and every output's batch axis, must be symbolic (not frozen to a size)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        frozen = [i for i, d in enumerate(dims) if not d.dim_param and vi.name in ("x", "y")
                  and i < (2 if vi.name == "x" else 1)]
        if frozen:
            raise ValidationError(f"{vi.name} has fixed size on axis {frozen}: {[d.dim_value for d in dims]}; "
                                  "batch and sequence axes must be dynamic")


def validate_model(model: onnx.ModelProto, ckpt, options) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"onnx.checker rejected the export: {str(exc).splitlines()[0]}") from None
    check_symbolic_dims(model)
    blob = model.SerializeToString()
    shapes = onnx_input_shapes(model)
    outputs = [o.name for o in model.graph.output]
    for batch, seq in CHECK_SIZES:
        feeds = random_feeds(shapes, batch, seq, seed=batch)
        report = run_parity(TorchRunner(ckpt.build_model(), list(shapes)), [OnnxRuntimeRunner(blob)], feeds,
                            outputs=outputs)
        if not report.passed:
            raise ValidationError(f"exported model disagrees with PyTorch at batch {batch}, seq {seq}:\n"
                                  + report.to_table())
