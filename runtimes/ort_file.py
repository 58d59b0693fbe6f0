"""Whether a file is in ONNX Runtime's format (.ort), and the interface such a file tells: the one place every
reader of a model file (verify, Predictor's stepper, the CLI's loading) asks. Writing .ort: runtimes/ort_format.py."""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import RunnerError, error_message
from lstm_onnx.runtimes.session import numpy_dtype

ORT_MAGIC = b"ORTM"  # the flatbuffer file identifier, bytes 4-8 of every .ort file


def is_ort_format(path) -> bool:
    """True for a file in ONNX Runtime's format (whatever its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:8] == ORT_MAGIC
    except OSError:
        return False


def interface_model(path):
    """An onnx.ModelProto holding only what an .ort file tells through onnxruntime: its inputs and outputs
    (names, element types, dims) and its metadata, and no nodes. verify and feeds read this much of a model."""
    import onnxruntime as ort
    from onnx import helper

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ValueError(f"{path} is not a readable ORT-format model: {error_message(exc)}") from None

    def infos(args):
        out = []
        for a in args:
            try:
                element = helper.np_dtype_to_tensor_dtype(np.dtype(numpy_dtype(a.type)))
            except RunnerError:
                raise ValueError(f"{path}: {a.name} has type {a.type}, which verify cannot feed") from None
            out.append(helper.make_tensor_value_info(a.name, element, list(a.shape)))
        return out

    graph = helper.make_graph([], "ort_format", infos(session.get_inputs()), infos(session.get_outputs()))
    model = helper.make_model(graph)
    helper.set_model_props(model, dict(session.get_modelmeta().custom_metadata_map))
    return model
