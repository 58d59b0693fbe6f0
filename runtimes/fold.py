"""A streaming step with no numpy around the run: normalization folded into the model, a NaN/Inf check as an
output.

On small models a step is tens of microseconds, and each numpy call right after an onnxruntime run cost
9-18 us on our development VM (1.3 us in isolation). So the Stepper runs a copy of the model that takes raw
features (`raw_x`), returns raw targets (`raw_y`) and the sum of the input (`raw_x_sum`): the sum is finite
unless an element is NaN or Inf (or it overflows float32), which the caller checks on a Python float.

The affine maps go into the weights where the graph has the shapes our exporter writes (the first layer's
input weights and bias, the head's weights and bias: no extra nodes); anywhere else they become Mul/Add
nodes. Needs the `onnx` package; without it the Stepper normalizes in numpy, with the same results.
"""
from __future__ import annotations

import numpy as np

RAW_X, RAW_Y, SUM = "raw_x", "raw_y", "raw_x_sum"


def fold_normalization(model_path, norm: dict | None, denormalize: bool) -> bytes | None:
    """The model at `model_path` with raw I/O and a `raw_x_sum` output, serialized; None without onnx."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return None
    from lstm_onnx.runtimes.ort_file import is_ort_format

    if is_ort_format(model_path):  # a flatbuffer onnx cannot read or edit: the stepper normalizes in numpy
        return None
    model = onnx.load(str(model_path))
    g = _Graph(model.graph)
    next(vi for vi in model.graph.input if vi.name == "x").name = RAW_X
    next(vi for vi in model.graph.output if vi.name == "y").name = RAW_Y
    g.rename_input("x", RAW_X)
    g.rename_output("y", RAW_Y)
    if norm is not None:
        scale = (1.0 / np.asarray(norm["input_std"], np.float32)).astype(np.float32)
        shift = (-np.asarray(norm["input_mean"], np.float32) * scale).astype(np.float32)
        if not g.fold_input(scale, shift):
            g.affine_before(RAW_X, scale, shift)
        if denormalize:
            std, mean = (np.asarray(norm[k], np.float32) for k in ("target_std", "target_mean"))
            if not g.fold_output(std, mean):
                g.affine_after(RAW_Y, std, mean)
    g.nodes.append(helper.make_node("ReduceSum", [RAW_X], [SUM], keepdims=0))
    del model.graph.node[:]
    model.graph.node.extend(g.nodes)
    model.graph.output.append(helper.make_tensor_value_info(SUM, TensorProto.FLOAT, []))
    return model.SerializeToString()


class _Graph:
    """The top-level node list and float32 initializers of a model, edited in place."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph, self.nodes = graph, list(graph.node)
        self.inits = {t.name: t for t in graph.initializer}
        self._to_array, self._from_array = numpy_helper.to_array, numpy_helper.from_array

    def rename_input(self, old: str, new: str) -> None:
        for node in self.nodes:
            node.input[:] = [new if i == old else i for i in node.input]

    def rename_output(self, old: str, new: str) -> None:
        for node in self.nodes:
            node.output[:] = [new if o == old else o for o in node.output]

    def consumers(self, value: str) -> list:
        return [n for n in self.nodes if value in n.input]

    def producer(self, value: str):
        return next((n for n in self.nodes if value in n.output), None)

    def weight(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return None if t is None or t.data_type != 1 else self._to_array(t).copy()  # 1: FLOAT

    def set_weight(self, name: str, value: np.ndarray) -> None:
        self.inits[name].CopyFrom(self._from_array(value.astype(np.float32), name))

    def fold_input(self, scale: np.ndarray, shift: np.ndarray) -> bool:
        """x_n = x * scale + shift, pushed into the first layer: W' = W diag(scale), b' = b + W shift."""
        x = RAW_X
        users = self.consumers(x)
        if len(users) == 1 and users[0].op_type == "Transpose":
            x = users[0].output[0]
            users = self.consumers(x)
        plan = [self._plan_input(n, x) for n in users]
        if not users or None in plan:
            return False
        for apply in plan:
            apply(scale, shift)
        return True

    def _plan_input(self, node, x: str):
        if node.op_type == "LSTM" and node.input[0] == x and self.weight(node.input[1]) is not None:
            return lambda scale, shift: self._fold_lstm(node, scale, shift)
        if node.op_type == "MatMul" and node.input[0] == x and self.weight(node.input[1]) is not None:
            adds = self.consumers(node.output[0])
            if len(adds) == 1 and adds[0].op_type == "Add" and self.weight(adds[0].input[1]) is not None:
                return lambda scale, shift: self._fold_matmul(node, adds[0], scale, shift)
        return None

    def _fold_lstm(self, node, scale, shift) -> None:
        W = self.weight(node.input[1])  # [D, 4H, I]
        self.set_weight(node.input[1], W * scale)
        b_x = W @ shift  # [D, 4H]
        if len(node.input) > 3 and node.input[3]:
            B = self.weight(node.input[3])  # [D, 8H] = [Wb; Rb]
            B[:, :b_x.shape[1]] += b_x
            self.set_weight(node.input[3], B)
        else:
            name = node.name + ".fold_B"
            self.graph.initializer.append(self._from_array(
                np.concatenate([b_x, np.zeros_like(b_x)], 1).astype(np.float32), name))
            self.inits[name] = self.graph.initializer[-1]
            node.input.extend([""] * (4 - len(node.input)))
            node.input[3] = name

    def _fold_matmul(self, matmul, add, scale, shift) -> None:
        W_t = self.weight(matmul.input[1])  # [I, 4H]
        self.set_weight(matmul.input[1], scale[:, None] * W_t)
        self.set_weight(add.input[1], self.weight(add.input[1]) + shift @ W_t)

    def fold_output(self, std: np.ndarray, mean: np.ndarray) -> bool:
        """y = y_n * std + mean, pushed into the head: Gemm(transB) or MatMul + Add, then layout ops."""
        node = self.producer(RAW_Y)
        while node is not None and node.op_type in ("Identity", "Transpose"):
            node = self.producer(node.input[0])
        if node is not None and node.op_type == "Gemm" and self.weight(node.input[1]) is not None \
                and len(node.input) > 2 and self.weight(node.input[2]) is not None:
            self.set_weight(node.input[1], self.weight(node.input[1]) * std[:, None])  # W [O, D*H], transB
            self.set_weight(node.input[2], self.weight(node.input[2]) * std + mean)
            return True
        if node is not None and node.op_type == "Add" and self.weight(node.input[1]) is not None:
            matmul = self.producer(node.input[0])
            if matmul is not None and matmul.op_type == "MatMul" and self.weight(matmul.input[1]) is not None:
                self.set_weight(matmul.input[1], self.weight(matmul.input[1]) * std)  # W_t [D*H, O]
                self.set_weight(node.input[1], self.weight(node.input[1]) * std + mean)
                return True
        return False

    def affine_before(self, x: str, scale, shift) -> None:
        from onnx import helper

        self._add_consts(("fold.scale", scale), ("fold.shift", shift))
        self.rename_input(x, "fold.x_n")
        self.nodes[:0] = [helper.make_node("Mul", [x, "fold.scale"], ["fold.x_s"]),
                          helper.make_node("Add", ["fold.x_s", "fold.shift"], ["fold.x_n"])]

    def affine_after(self, y: str, std, mean) -> None:
        from onnx import helper

        self._add_consts(("fold.t_std", std), ("fold.t_mean", mean))
        self.rename_output(y, "fold.y_n")
        self.nodes += [helper.make_node("Mul", ["fold.y_n", "fold.t_std"], ["fold.y_s"]),
                       helper.make_node("Add", ["fold.y_s", "fold.t_mean"], [y])]

    def _add_consts(self, *pairs) -> None:
        for name, value in pairs:
            self.graph.initializer.append(self._from_array(np.asarray(value, np.float32), name))
