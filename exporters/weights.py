"""The ONE place where PyTorch's LSTM layout becomes ONNX's.

PyTorch packs gates i, f, g, o; ONNX packs W/R/B as i, o, f, c, with B = [Wb; Rb] and P = [p_i, p_o, p_f].
Our peephole parameter is [3, H] with rows (p_i, p_f, p_o).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Index of each ONNX gate block (i, o, f, c) in PyTorch's packing (i, f, g, o).
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
# Index of each ONNX peephole (p_i, p_o, p_f) in our [3, H] parameter (p_i, p_f, p_o).
TORCH_TO_ONNX_PEEPHOLES = (0, 2, 1)


def reorder_gates(packed):
    """[4H, ...] in PyTorch's i, f, g, o order -> ONNX's i, o, f, c order (numpy array or torch tensor)."""
    H = packed.shape[0] // 4
    return packed[[k * H + j for k in TORCH_TO_ONNX_GATES for j in range(H)]]


def reorder_peepholes(peep):
    """[3, H] rows (p_i, p_f, p_o) -> flat [3H] in ONNX's (p_i, p_o, p_f) order (numpy or torch)."""
    return peep[list(TORCH_TO_ONNX_PEEPHOLES)].reshape(-1)


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
        sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")

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
