"""Random, reproducible feeds for a model's inputs, at any batch and sequence size."""
from __future__ import annotations

import numpy as np


def random_feeds(input_shapes: dict[str, list], batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`input_shapes` maps input names to dims, symbolic ones as strings ("batch", "seq").

    x and states are N(0, 1) float32; `lengths` (int32) is random in [1, seq] with the first item at seq.
    """
    rng = np.random.default_rng(seed)
    sizes = {"batch": batch, "seq": seq}
    feeds = {}
    for name, dims in input_shapes.items():
        shape = [sizes.get(d, d) if isinstance(d, str) else d for d in dims]
        if any(isinstance(d, str) for d in shape):
            raise ValueError(f"input {name!r} has a symbolic dim other than batch/seq: {dims}")
        if name == "lengths":
            lengths = rng.integers(1, seq + 1, size=shape).astype(np.int32)
            lengths[0] = seq
            feeds[name] = lengths
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def onnx_input_shapes(model) -> dict[str, list]:
    """Input dims of an onnx.ModelProto: ints, or dim_param strings for symbolic dims."""
    shapes = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    return shapes
