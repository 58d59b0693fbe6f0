"""ONNX LSTM initializers (W, R, B, P) of one layer, gathered from a PeepholeLSTM state_dict.

The gate-order conversion itself is lstm_onnx.core.gates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_onnx.core.gates import param_suffix, reorder_gates, reorder_peepholes


@dataclass
class OnnxLSTMWeights:
    """Initializers of one ONNX LSTM node (all directions): W [D,4H,I], R [D,4H,H], B [D,8H], P [D,3H]|None."""

    W: np.ndarray
    R: np.ndarray
    B: np.ndarray | None
    P: np.ndarray | None

    @property
    def hidden_size(self) -> int:
        return self.R.shape[-1]


def layer_weights(state_dict: dict, layer: int, num_directions: int, prefix: str = "lstm.") -> OnnxLSTMWeights:
    """Gather one layer's ONNX initializers from a PeepholeLSTM state_dict (numpy or torch values)."""
    W, R, B, P = [], [], [], []
    for d in range(num_directions):
        sfx = param_suffix(layer, d)

        def get(name):
            value = state_dict.get(prefix + name + sfx)
            return None if value is None else _numpy(value)

        W.append(reorder_gates(get("weight_ih")))
        R.append(reorder_gates(get("weight_hh")))
        b_ih, b_hh = get("bias_ih"), get("bias_hh")
        if b_ih is not None:
            B.append(np.concatenate([reorder_gates(b_ih), reorder_gates(b_hh)]))
        peep = get("peephole")
        if peep is not None:
            P.append(reorder_peepholes(peep))
    as_f32 = lambda xs: np.stack(xs).astype(np.float32) if xs else None  # noqa: E731
    return OnnxLSTMWeights(as_f32(W), as_f32(R), as_f32(B), as_f32(P))


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
