"""The gate traces of core.probe, from a checkpoint's weights, by the PeepholeLSTM equations step by step.

Written from the equations in PyTorch's layout (gates i, f, g, o; peepholes [3, H] rows p_i, p_f, p_o), in
float64, independent of the exporters' ONNX graph and of pipeline.cell's kernels, so a probe export can be
checked against it:

    pre_i = x W_i^T + h R_i^T + b_i + p_i ⊙ c_prev    i = σ(pre_i)
    pre_f = x W_f^T + h R_f^T + b_f + p_f ⊙ c_prev    f = σ(pre_f)
    c     = f ⊙ c_prev + i ⊙ tanh(x W_g^T + h R_g^T + b_g)
    pre_o = x W_o^T + h R_o^T + b_o + p_o ⊙ c         o = σ(pre_o)      h = o ⊙ tanh(c)
"""
from __future__ import annotations

import numpy as np
import torch

from lstm_onnx.core.gates import param_suffix
from lstm_onnx.core.probe import TRACES, trace_name


def torch_traces(state_dict: dict, model_config, x: np.ndarray) -> dict[str, np.ndarray]:
    """x: normalized features [batch, seq, F] -> {probe name: float32 [seq, batch, H]} for every layer and
    direction (zero initial state)."""
    cfg = model_config
    layer_in = torch.as_tensor(np.asarray(x), dtype=torch.float64).transpose(0, 1)  # [S, B, F]
    out: dict[str, np.ndarray] = {}
    for layer in range(cfg.num_layers):
        ys = []
        for d in range(cfg.num_directions):
            y, traces = _direction(state_dict, cfg, layer_in, layer, d)
            ys.append(y)
            out.update({trace_name(layer, d, k): v.numpy().astype(np.float32) for k, v in traces.items()})
        layer_in = torch.cat(ys, 2)
    return out


def _param(state_dict, name, layer, d):
    value = state_dict.get(f"lstm.{name}{param_suffix(layer, d)}")
    return None if value is None else torch.as_tensor(value).detach().to(torch.float64)


def _direction(state_dict, cfg, x, layer: int, d: int):
    S, B, H = x.shape[0], x.shape[1], cfg.hidden_size
    W, R = _param(state_dict, "weight_ih", layer, d), _param(state_dict, "weight_hh", layer, d)
    b = torch.zeros(4 * H, dtype=torch.float64)
    if cfg.bias:
        b = _param(state_dict, "bias_ih", layer, d) + _param(state_dict, "bias_hh", layer, d)
    p = _param(state_dict, "peephole", layer, d) if cfg.peephole else torch.zeros(3, H, dtype=torch.float64)
    p_i, p_f, p_o = p
    h = c = torch.zeros(B, H, dtype=torch.float64)
    y = torch.zeros(S, B, H, dtype=torch.float64)
    traces = {k: torch.zeros(S, B, H, dtype=torch.float64) for k in TRACES}
    for t in (range(S - 1, -1, -1) if d else range(S)):
        z = x[t] @ W.T + h @ R.T + b
        z_i, z_f, z_g, z_o = z.split(H, dim=1)
        peep_i, peep_f = p_i * c, p_f * c
        pre_i, pre_f = z_i + peep_i, z_f + peep_f
        i, f = torch.sigmoid(pre_i), torch.sigmoid(pre_f)
        c = f * c + i * torch.tanh(z_g)
        peep_o = p_o * c
        pre_o = z_o + peep_o
        o = torch.sigmoid(pre_o)
        h = o * torch.tanh(c)
        y[t] = h
        for k, v in zip(TRACES, (i, f, o, c, peep_i, peep_f, peep_o, pre_i, pre_f, pre_o)):
            traces[k][t] = v
    return y, traces
