"""A small ONNX graph builder: unique names, initializers, and the few node patterns every form shares."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

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
