"""Explain a parity failure: does the failing runner match the model with the LSTM peepholes removed?

OpenVINO's ONNX frontend drops input P. If a runner fails against the baseline but matches the same model
run on ORT CPU with P stripped, it almost surely ignored P; the report says so.
"""
from __future__ import annotations

import onnx

from lstm_onnx.runtimes.compare import Tolerances, compare_outputs
from lstm_onnx.runtimes.placement import lstm_nodes_with_peepholes

P_INPUT = 7


def strip_peepholes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose LSTM nodes have no P input (the math a runtime that drops P computes)."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    for node in stripped.graph.node:
        if node.op_type == "LSTM" and len(node.input) > P_INPUT:
            del node.input[P_INPUT:]
            while node.input and not node.input[-1]:
                del node.input[-1]
    return stripped


def outputs_without_peepholes(model: onnx.ModelProto, feeds: dict, folder=None) -> dict:
    """`folder`: where the model file was, so that weights it keeps in external data files are found (the
    stripped copy runs from memory, which has no folder of its own)."""
    import onnxruntime as ort

    from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # ORT warns that P is now an unused initializer: that is the point
    if folder is not None:
        quiet.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    with OnnxRuntimeRunner(strip_peepholes(model).SerializeToString(), "cpu", session_options=quiet) as runner:
        return runner.infer({k: feeds[k] for k in runner.input_names})


def dropped_peepholes(model: onnx.ModelProto, feeds: dict, failing: dict[str, dict],
                      tolerances: Tolerances, folder=None) -> list[str]:
    """Warnings for each runner in `failing` (name -> its outputs) that matches the model without P.
    `folder`: the model file's folder (for external data)."""
    if not failing or not lstm_nodes_with_peepholes(model):
        return []
    reference = outputs_without_peepholes(model, feeds, folder)
    warnings = []
    for runner, actual in failing.items():
        rows = compare_outputs(runner, actual, reference, tolerances, [n for n in reference if n in actual])
        if rows and all(r.passed for r in rows):
            worst = max(r.max_abs for r in rows)
            warnings.append(f"{runner} matches this model with the LSTM peepholes removed (max abs {worst:.2g}): "
                            f"it likely dropped P. Export with --form decomposed for this runtime")
    return warnings
