"""onnx.reference.ReferenceEvaluator. Its LSTM silently ignores some inputs and attributes; we refuse those.
Whether it honours sequence_lens depends on the onnx release, so that is measured once per process
(sequence_lens_honoured), not assumed."""
from __future__ import annotations

import functools

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerRefused, RunnerUnavailable
from lstm_onnx.runtimes.onnx_graph import all_nodes, io_names

# What onnx/reference/ops/op_lstm.py accepts but does not implement (onnx 1.16 to 1.23 at least).
IGNORED_ATTRIBUTES = ("clip", "input_forget", "activations", "activation_alpha", "activation_beta")
SEQUENCE_LENS = 4  # LSTM input index
DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")  # the operator sets it implements


def unknown_ops(model) -> list[str]:
    """Nodes from domains the reference evaluator has no kernels for (e.g. com.microsoft DynamicQuantizeLSTM),
    unless the model defines them as functions."""
    functions = {(f.domain, f.name) for f in model.functions}
    return sorted({f"{node.domain}.{node.op_type}" for node in all_nodes(model.graph)
                   if node.domain not in DOMAINS and (node.domain, node.op_type) not in functions})


def lengths_probe():
    """(model, feeds, expected): one LSTM node with sequence_lens [5, 2, 1] of 5 steps, and its Y and Y_h from
    the float64 numpy equations (runtimes/numpy_ref), which read PyTorch's gate layout."""
    from onnx import TensorProto, helper, numpy_helper

    from lstm_onnx.core.gates import reorder_gates
    from lstm_onnx.runtimes.numpy_ref import lstm_direction

    I, H, S, lengths = 2, 3, 5, np.array([5, 2, 1], np.int32)
    rng = np.random.default_rng(0)
    W, R, b = (rng.uniform(-1, 1, shape).astype(np.float32) for shape in ((4 * H, I), (4 * H, H), (4 * H,)))
    x = rng.standard_normal((S, len(lengths), I)).astype(np.float32)
    inits = [numpy_helper.from_array(reorder_gates(W)[None], "W"), numpy_helper.from_array(reorder_gates(R)[None], "R"),
             numpy_helper.from_array(np.concatenate([reorder_gates(b), np.zeros(4 * H, np.float32)])[None], "B")]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "lengths"], ["y", "hn"], hidden_size=H)
    graph = helper.make_graph(
        [node], "lengths_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [S, len(lengths), I]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, [len(lengths)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [S, 1, len(lengths), H]),
         helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, len(lengths), H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    zeros = np.zeros((len(lengths), H))
    y, h, _ = lstm_direction(x.astype(np.float64), W, R, b, (zeros[0],) * 3, zeros, zeros, lengths, False)
    return model, {"x": x, "lengths": lengths}, {"y": y[:, None], "hn": h[None]}


def honours_lengths(run) -> bool:
    """Whether `run(model, feeds) -> [y, hn]` computes lengths_probe's model as the equations do."""
    model, feeds, expected = lengths_probe()
    got = run(model, feeds)
    return all(np.allclose(g, expected[k], atol=1e-5) for g, k in zip(got, ("y", "hn")))


@functools.lru_cache(maxsize=None)
def sequence_lens_honoured() -> bool:
    """Whether the installed onnx's reference LSTM applies sequence_lens (measured once per process)."""
    from onnx.reference import ReferenceEvaluator

    return honours_lengths(lambda model, feeds: ReferenceEvaluator(model).run(None, feeds))


def unsupported_features(model) -> list[str]:
    """What in `model` the installed reference evaluator would silently get wrong."""
    problems = []
    for node in all_nodes(model.graph):
        if node.op_type != "LSTM":
            continue
        where = f"{node.name}: " if node.name else ""  # ONNX's own test nodes have no name
        if len(node.input) > SEQUENCE_LENS and node.input[SEQUENCE_LENS] and not sequence_lens_honoured():
            problems.append(f"{where}sequence_lens")
        for attr in node.attribute:
            if attr.name in IGNORED_ATTRIBUTES and not (attr.name == "input_forget" and attr.i == 0):
                problems.append(f"{where}{attr.name}")
    return problems


class OnnxReferenceRunner(Runner):
    name = "onnx-reference"

    def __init__(self, model_path, refuse_ignored: bool = True):
        """refuse_ignored=False runs what the evaluator would ignore (capability measurement only)."""
        super().__init__()
        self.model_path = model_path
        self.refuse_ignored = refuse_ignored
        self.evaluator = None

    def _activate(self):
        try:
            import onnx
            from onnx.reference import ReferenceEvaluator
        except ImportError:
            raise RunnerUnavailable("onnx is not installed: pip install onnx") from None
        model = onnx.load(str(self.model_path))
        unknown = unknown_ops(model)
        if unknown:
            raise RunnerRefused(f"onnx.reference has no kernel for {', '.join(unknown)}; refused")
        problems = unsupported_features(model) if self.refuse_ignored else []
        if problems:
            raise RunnerRefused("onnx.reference ignores " + ", ".join(problems) +
                                " and would return wrong numbers; refused")
        self.evaluator = ReferenceEvaluator(model)
        self._inputs = io_names(model.graph)[0]

    def _input_names(self):
        return self._inputs

    def _infer(self, feeds):
        outputs = self.evaluator.run(None, feeds)
        return dict(zip(self.evaluator.output_names, outputs))

    def _deactivate(self):
        self.evaluator = None
