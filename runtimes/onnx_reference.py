"""onnx.reference.ReferenceEvaluator. Its LSTM silently ignores some inputs and attributes; we refuse those."""
from __future__ import annotations

from lstm_onnx.runtimes.base import Runner, RunnerRefused, RunnerUnavailable
from lstm_onnx.runtimes.onnx_graph import all_nodes, io_names

# What onnx/reference/ops/op_lstm.py accepts but does not implement (as of onnx 1.23).
IGNORED_ATTRIBUTES = ("clip", "input_forget", "activations", "activation_alpha", "activation_beta")
SEQUENCE_LENS = 4  # LSTM input index
DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")  # the operator sets it implements


def unknown_ops(model) -> list[str]:
    """Nodes from domains the reference evaluator has no kernels for (e.g. com.microsoft DynamicQuantizeLSTM),
    unless the model defines them as functions."""
    functions = {(f.domain, f.name) for f in model.functions}
    return sorted({f"{node.domain}.{node.op_type}" for node in all_nodes(model.graph)
                   if node.domain not in DOMAINS and (node.domain, node.op_type) not in functions})


def unsupported_features(model) -> list[str]:
    """What in `model` the reference evaluator would silently get wrong."""
    problems = []
    for node in all_nodes(model.graph):
        if node.op_type != "LSTM":
            continue
        where = f"{node.name}: " if node.name else ""  # ONNX's own test nodes have no name
        if len(node.input) > SEQUENCE_LENS and node.input[SEQUENCE_LENS]:
            problems.append(f"{where}sequence_lens")
        for attr in node.attribute:
            if attr.name in IGNORED_ATTRIBUTES and not (attr.name == "input_forget" and attr.i == 0):
                problems.append(f"{where}{attr.name}")
    return problems


class OnnxReferenceRunner(Runner):
    name = "onnx-reference"

    def __init__(self, model_path):
        super().__init__()
        self.model_path = model_path
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
        problems = unsupported_features(model)
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
