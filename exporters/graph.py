"""A small ONNX graph builder: unique names, initializers, and the few node patterns every form shares."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


class GraphBuilder:
    """`float_type` is the element type of the computation (FLOAT or FLOAT16); `fconst` casts to it.

    `seq_len`/`batch_size` are set for static-shape forms (unrolled) and None when the axes are symbolic.
    """

    def __init__(self, name: str, float_type: int = FLOAT, seq_len: int | None = None,
                 batch_size: int | None = None, _counts: dict | None = None):
        self.name = name
        self.float_type = float_type
        self.seq_len, self.batch_size = seq_len, batch_size
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {} if _counts is None else _counts
        self._cache: dict = {}

    def subgraph(self, name: str) -> "GraphBuilder":
        """A builder for a control-flow body; it shares our name counter, so no name shadows an outer one."""
        return GraphBuilder(self.fresh(name), self.float_type, self.seq_len, self.batch_size, self._counts)

    @property
    def np_float(self):
        return helper.tensor_dtype_to_np_dtype(self.float_type)

    def fconst(self, array: np.ndarray, name: str) -> str:
        """A floating-point initializer in the computation's precision."""
        return self.const(np.asarray(array).astype(self.np_float), name)

    def cached(self, key, make):
        """One node or initializer per key (e.g. a step index reused by every layer of an unrolled graph)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def fresh(self, base: str) -> str:
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def value_input(self, name: str, elem_type: int, shape: list | None = None) -> str:
        """A (sub)graph input under a fresh name; returns the name."""
        name = self.fresh(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def value_output(self, value: str, elem_type: int, shape: list | None = None) -> None:
        """Declare an existing value as a (sub)graph output, without an Identity."""
        self.outputs.append(helper.make_tensor_value_info(value, elem_type, shape))

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        self.node("Identity", [value], [name])
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def const(self, array: np.ndarray, name: str) -> str:
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, name: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), name)

    def node(self, op: str, inputs: list[str], outputs: list[str] | int = 1, name: str | None = None,
             domain: str = "", **attrs) -> list[str]:
        if isinstance(outputs, int):
            outputs = [self.fresh(f"{op.lower()}_out") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.fresh(name or op), domain=domain,
                                           **attrs))
        return outputs

    def op(self, op: str, *inputs: str, **attrs) -> str:
        """A one-output node; returns its output name."""
        return self.node(op, list(inputs), 1, **attrs)[0]

    def graph(self) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)


def merge_directions(g: GraphBuilder, y: str, num_directions: int) -> str:
    """ONNX RNN output [S, D, B, H] -> [S, B, D*H] (the next layer's input, as nn.LSTM concatenates)."""
    if num_directions == 1:
        return g.op("Squeeze", y, g.ints([1], "axis1"))
    return g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.ints([0, 0, -1]))


def final_features(g: GraphBuilder, y_h: str, num_directions: int) -> str:
    """The top layer's final hidden states [D, B, H] -> [B, D*H], directions concatenated."""
    if num_directions == 1:
        return g.op("Squeeze", y_h, g.ints([0], "axis0"))
    return g.op("Reshape", g.op("Transpose", y_h, perm=[1, 0, 2]), g.ints([0, -1]))
