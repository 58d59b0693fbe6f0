"""Which opsets an export may use: from 14 (LSTM's layout attribute) to what onnx and onnxruntime both run."""
from __future__ import annotations

import functools

import onnx

MIN_OPSET = 14
# The newest opset every runtime we target loads, onnxruntime-node 1.30 and OpenVINO 2026 included.
DEFAULT_OPSET = 21


def ir_version_for(opset: int) -> int:
    """The lowest IR version that carries `opset`. onnx 1.23 writes IR 14 by default, which
    onnxruntime-node 1.30 refuses ("max supported IR version: 13"); opset 21 needs only IR 10."""
    from onnx import helper

    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


class OpsetError(ValueError):
    pass


@functools.lru_cache(maxsize=None)
def max_opset() -> int:
    """The newest default-domain opset that the installed onnx knows and onnxruntime loads (probed)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    newest = onnx.defs.onnx_opset_version()
    for opset in range(newest, MIN_OPSET - 1, -1):
        node = helper.make_node("Identity", ["a"], ["b"])
        vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])  # noqa: E731
        model = helper.make_model(helper.make_graph([node], "probe", [vi("a")], [vi("b")]),
                                  opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version_for(opset))
        try:
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            sess.run(None, {"a": np.zeros(1, np.float32)})
            return opset
        except Exception:  # noqa: BLE001 - any refusal means "not supported"
            continue
    raise OpsetError("onnxruntime loads no opset >= 14")


def check_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else opset
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise OpsetError(f"opset {opset} is not supported: choose {MIN_OPSET}..{top} "
                         f"(the newest that the installed onnx and onnxruntime both run)")
    return opset
