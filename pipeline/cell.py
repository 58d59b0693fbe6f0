"""One LSTM layer over time, in one direction, with optional peepholes: the exact training step.

Shapes: x [S, B, I] (time-major), w_ih [4H, I], w_hh [4H, H], bias [4H] (b_ih + b_hh),
peep [3, H] holding (p_i, p_f, p_o), h0/c0 [B, H]. PyTorch gate order i, f, g, o.

    i = σ(x W_i + h W_hi + p_i ⊙ c_prev + b_i)
    f = σ(x W_f + h W_hf + p_f ⊙ c_prev + b_f)
    g = tanh(x W_g + h W_hg + b_g)
    c = f ⊙ c_prev + i ⊙ g
    o = σ(x W_o + h W_ho + p_o ⊙ c + b_o)        # the output gate peeks at the NEW cell
    h = o ⊙ tanh(c)

`PeepholeLayerFunction` saves its activations in the forward pass and runs a hand-written backward, which
is faster than autograd over a per-step loop. `masked_layer` handles per-item lengths through plain
autograd (inference and the rare padded training batch).
"""
from __future__ import annotations

import os

import torch
from torch import Tensor


def _zeros_peep(w_hh: Tensor) -> Tensor:
    return w_hh.new_zeros(3, w_hh.shape[1])


def _step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, p_i, p_f, p_o):
    gates = torch.addmm(gx, h, w_hh.t())  # [B, 4H]
    g_i, g_f, g_g, g_o = gates.chunk(4, 1)
    i = torch.sigmoid(g_i + p_i * c)
    f = torch.sigmoid(g_f + p_f * c)
    g = torch.tanh(g_g)
    c_new = f * c + i * g
    o = torch.sigmoid(g_o + p_o * c_new)
    tanh_c = torch.tanh(c_new)
    return i, f, g, o, c_new, tanh_c, o * tanh_c


class PeepholeLayerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias, peep, h0, c0):
        S, B, _ = x.shape
        H = w_hh.shape[1]
        p = peep if peep is not None else _zeros_peep(w_hh)
        p_i, p_f, p_o = p[0], p[1], p[2]
        gx = torch.matmul(x, w_ih.t())  # [S, B, 4H]
        if bias is not None:
            gx = gx + bias
        ifgo = x.new_empty(S, B, 4 * H)
        cs = x.new_empty(S + 1, B, H)  # c_{t-1} for t = 0..S, then c_S
        hs = x.new_empty(S + 1, B, H)
        tanh_cs = x.new_empty(S, B, H)
        hs[0], cs[0] = h0, c0
        for t in range(S):
            i, f, g, o, c, tanh_c, h = _step(gx[t], hs[t], cs[t], w_hh, p_i, p_f, p_o)
            ifgo[t] = torch.cat((i, f, g, o), 1)
            cs[t + 1], hs[t + 1], tanh_cs[t] = c, h, tanh_c
        ctx.save_for_backward(x, w_ih, w_hh, p, ifgo, cs, hs, tanh_cs)
        ctx.has_bias, ctx.has_peep = bias is not None, peep is not None
        y = hs[1:].clone()
        return y, hs[S].clone(), cs[S].clone()

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        x, w_ih, w_hh, p, ifgo, cs, hs, tanh_cs = ctx.saved_tensors
        S, B, _ = x.shape
        H = w_hh.shape[1]
        p_i, p_f, p_o = p[0], p[1], p[2]
        dgates = x.new_empty(S, B, 4 * H)
        dp = torch.zeros_like(p)  # rows (p_i, p_f, p_o)
        dh = dh_n.clone() if dh_n is not None else x.new_zeros(B, H)
        dc = dc_n.clone() if dc_n is not None else x.new_zeros(B, H)
        if dy is None:
            dy = x.new_zeros(S, B, H)
        for t in range(S - 1, -1, -1):
            i, f, g, o = ifgo[t].chunk(4, 1)
            c_prev, c, tanh_c = cs[t], cs[t + 1], tanh_cs[t]
            dh_t = dy[t] + dh
            dg_o = dh_t * tanh_c * o * (1 - o)
            dc_t = dc + dh_t * o * (1 - tanh_c * tanh_c) + dg_o * p_o
            dg_i = dc_t * g * i * (1 - i)
            dg_f = dc_t * c_prev * f * (1 - f)
            dg_g = dc_t * i * (1 - g * g)
            dp[0] += (dg_i * c_prev).sum(0)
            dp[1] += (dg_f * c_prev).sum(0)
            dp[2] += (dg_o * c).sum(0)
            dgates[t] = torch.cat((dg_i, dg_f, dg_g, dg_o), 1)
            dh = torch.mm(dgates[t], w_hh)
            dc = dc_t * f + dg_i * p_i + dg_f * p_f
        flat = dgates.reshape(S * B, 4 * H)
        dx = torch.matmul(dgates, w_ih) if ctx.needs_input_grad[0] else None
        dw_ih = flat.t().mm(x.reshape(S * B, -1))
        dw_hh = flat.t().mm(hs[:S].reshape(S * B, H))
        dbias = flat.sum(0) if ctx.has_bias else None
        return dx, dw_ih, dw_hh, dbias, (dp if ctx.has_peep else None), dh, dc


def masked_layer(x, w_ih, w_hh, bias, peep, h0, c0, lengths: Tensor, reverse: bool):
    """A layer over a padded batch: items stop at their own length, outputs past it are zero (ONNX spec).

    Reverse runs from S-1 down to 0; for an item, the state stays at h0/c0 until its last valid step,
    so it effectively starts at lengths[b]-1, as ONNX's sequence_lens requires.
    """
    S = x.shape[0]
    p = peep if peep is not None else _zeros_peep(w_hh)
    gx = torch.matmul(x, w_ih.t())
    if bias is not None:
        gx = gx + bias
    h, c = h0, c0
    ys = [None] * S
    steps = range(S - 1, -1, -1) if reverse else range(S)
    for t in steps:
        m = (t < lengths).to(x.dtype).unsqueeze(1)  # [B, 1]
        *_, c_new, _, h_new = _step(gx[t], h, c, w_hh, p[0], p[1], p[2])
        h = m * h_new + (1 - m) * h
        c = m * c_new + (1 - m) * c
        ys[t] = m * h_new
    return torch.stack(ys), h, c


def lstm_layer(x, w_ih, w_hh, bias, peep, h0, c0, lengths=None, reverse=False):
    """Dispatch one direction of one layer: padded batches, the compiled kernel, or the Python kernel."""
    if lengths is not None:
        return masked_layer(x, w_ih, w_hh, bias, peep, h0, c0, lengths, reverse)
    if reverse:
        x = x.flip(0)
    kernel = _compiled_kernel() if x.device.type == "cpu" else None
    y, h, c = (kernel or PeepholeLayerFunction.apply)(x.contiguous(), w_ih, w_hh, bias, peep, h0, c0)
    return (y.flip(0) if reverse else y), h, c


_compiled = []  # [kernel or None], filled on first use


def _compiled_kernel():
    if not _compiled:
        _compiled.append(_load_compiled())
    return _compiled[0]


def use_kernel(name: str) -> None:
    """Route this process's CPU training through "compiled" (when it loads) or "python"
    (pipeline/kernel_choice.py decides which)."""
    _compiled[:] = [_load_compiled() if name == "compiled" else None]


def _load_compiled():
    # LSTM_PIPELINE_KERNEL is kernel_choice's to read: train installs what it chose through use_kernel
    if os.environ.get("LSTM_PIPELINE_NO_EXT") == "1":
        return None
    try:
        from lstm_onnx.pipeline import fastpath
    except ImportError:  # the extension's loader is optional
        return None
    return fastpath.fused_lstm_layer if fastpath.available() else None
