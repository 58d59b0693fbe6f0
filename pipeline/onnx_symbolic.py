"""PeepholeLSTM inside torch.onnx.export: one native ONNX `LSTM` node per layer, P included.

PeepholeLSTM.forward calls `onnx_lstm_forward` while torch.onnx traces it; the node's W/R/B/P come from the
parameters through lstm_onnx.core.gates (the one gate-order conversion) and are folded into initializers.
"""
from __future__ import annotations

import torch

from lstm_onnx.core.gates import param_suffix, reorder_gates, reorder_peepholes


def _onnx_weights(lstm, layer: int):
    W, R, B, P = [], [], [], []
    for d in range(lstm.num_directions):
        sfx = param_suffix(layer, d)
        W.append(reorder_gates(getattr(lstm, "weight_ih" + sfx)))
        R.append(reorder_gates(getattr(lstm, "weight_hh" + sfx)))
        if lstm.bias:
            B.append(torch.cat([reorder_gates(getattr(lstm, "bias_ih" + sfx)),
                                reorder_gates(getattr(lstm, "bias_hh" + sfx))]))
        if lstm.peephole:
            P.append(reorder_peepholes(getattr(lstm, "peephole" + sfx)))
    stack = lambda xs: torch.stack(xs) if xs else None  # noqa: E731
    return stack(W), stack(R), stack(B), stack(P)


def onnx_lstm_forward(lstm, x, hx, lengths):
    """Time-major x [S, B, I] -> (out [S, B, D*H], (h_n, c_n)), as ONNX LSTM nodes."""
    S, batch = x.shape[0], x.shape[1]
    D, H = lstm.num_directions, lstm.hidden_size
    seq_lens = lengths.to(torch.int32) if lengths is not None else None
    direction = "bidirectional" if D == 2 else "forward"
    h_n, c_n = [], []
    for layer in range(lstm.num_layers):
        W, R, B, P = _onnx_weights(lstm, layer)
        h0 = hx[0][layer * D:(layer + 1) * D] if hx is not None else None
        c0 = hx[1][layer * D:(layer + 1) * D] if hx is not None else None
        y, y_h, y_c = torch.onnx.ops.symbolic_multi_out(
            "::LSTM", [x, W, R, B, seq_lens, h0, c0, P], {"hidden_size": H, "direction": direction},
            dtypes=[x.dtype] * 3, shapes=[[S, D, batch, H], [D, batch, H], [D, batch, H]], version=14)
        x = y.permute(0, 2, 1, 3).reshape(S, batch, D * H)  # [S, D, B, H] -> [S, B, D*H]
        h_n.append(y_h)
        c_n.append(y_c)
    return x, (torch.cat(h_n), torch.cat(c_n))
