"""onnx.reference.ReferenceEvaluator. Its LSTM silently ignores some inputs and attributes; we refuse those."""
from __future__ import annotations

from lstm_onnx.runtimes.base import Runner, RunnerUnavailable
from lstm_onnx.runtimes.onnx_graph import all_nodes

# What onnx/reference/ops/op_lstm.py accepts but does not implement (as of onnx 1.23).
IGNORED_ATTRIBUTES = ("clip", "input_forget", "activations", "activation_alpha", "activation_beta")
SEQUENCE_LENS = 4  # LSTM input index


def unsupported_features(model) -> list[str]:
    """What in `model` the reference evaluator would silently get wrong."""
    problems = []
    for node in all_nodes(model.graph):
        if node.op_type != "LSTM":
            continue
        if len(node.input) > SEQUENCE_LENS and node.input[SEQUENCE_LENS]:
            problems.append(f"{node.name}: sequence_lens")
        for attr in node.attribute:
            if attr.name in IGNORED_ATTRIBUTES and not (attr.name == "input_forget" and attr.i == 0):
                problems.append(f"{node.name}: {attr.name}")
    return problems


class OnnxReferenceRunner(Runner):
    name = "onnx.reference"

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
        problems = unsupported_features(model)
        if problems:
            raise RunnerUnavailable("onnx.reference ignores " + ", ".join(problems) +
                                    " and would return wrong numbers; refused")
        self.evaluator = ReferenceEvaluator(model)
        self._inputs = [i.name for i in model.graph.input]

    def _input_names(self):
        return self._inputs

    def _infer(self, feeds):
        outputs = self.evaluator.run(None, feeds)
        return dict(zip(self.evaluator.output_names, outputs))

    def _deactivate(self):
        self.evaluator = None
