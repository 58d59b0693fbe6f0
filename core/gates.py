"""The ONE place where PyTorch's LSTM gate layout becomes ONNX's.

PyTorch packs gates i, f, g, o; ONNX packs W/R/B as i, o, f, c, with B = [Wb; Rb] and P = [p_i, p_o, p_f].
Our peephole parameter is [3, H] with rows (p_i, p_f, p_o). Both functions index numpy arrays and torch
tensors alike, so the graph builder and the torch.onnx route share them.
"""
from __future__ import annotations

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


def param_suffix(layer: int, direction: int) -> str:
    """nn.LSTM's parameter-name suffix: weight_ih_l0, weight_ih_l1_reverse, ..."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")
