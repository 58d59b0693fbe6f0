"""The unrolled form: every time step spelled out, static shapes, no control flow.

Built for GPU runtimes that capture a CUDA graph (ORT's enable_cuda_graph needs static shapes and no
Scan/Loop). Under graph capture ORT's CUDA Concat takes at most 32 inputs, so outputs are joined in groups.
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.exporters import cell
from lstm_onnx.exporters.graph import GraphBuilder
from lstm_onnx.exporters.weights import OnnxLSTMWeights

MAX_CONCAT_INPUTS = 32


def lstm_layer(g: GraphBuilder, x: str, w: OnnxLSTMWeights, layer: int, num_directions: int,
               seq_lens: str | None, h0: str | None, c0: str | None) -> tuple[str, str, str]:
    """X [S, B, I] (S = g.seq_len, B = g.batch_size) -> (Y [S, B, D*H], Y_h [D, B, H], Y_c [D, B, H])."""
    if g.seq_len is None or g.batch_size is None:
        raise ValueError("the unrolled form needs a static sequence length and batch size")
    S, B, H = g.seq_len, g.batch_size, w.hidden_size
    masks = None
    if seq_lens is not None:
        mask = cell.step_mask(g, x, seq_lens)  # [S, B, 1]
        masks = [g.op("Gather", mask, _index(g, t), axis=0) for t in range(S)]
    ys, hs, cs = [], [], []
    for d in range(num_directions):
        name = f"lstm{layer}" + ("_reverse" if d else "")
        xp = cell.input_projection(g, x, w, d, name)  # [S, B, 4H]
        r_t, peep = cell.step_weights(g, w, d, name)
        h, c = cell.initial_state(g, h0, d, x, H), cell.initial_state(g, c0, d, x, H)
        y = [None] * S
        for t in (range(S - 1, -1, -1) if d else range(S)):
            xp_t = g.op("Gather", xp, _index(g, t), axis=0)  # [B, 4H]
            h, c, y[t] = cell.step(g, xp_t, h, c, r_t, peep, H, masks[t] if masks else None)
        # [B, S*H] -> [B, S, H] -> [S, B, H]: one Reshape instead of S Unsqueezes.
        joined = g.op("Reshape", concat_grouped(g, y, axis=1), g.ints([B, S, H], "shape_bsh"))
        ys.append(g.op("Transpose", joined, perm=[1, 0, 2]))
        hs.append(g.op("Unsqueeze", h, g.ints([0], "axis0")))
        cs.append(g.op("Unsqueeze", c, g.ints([0], "axis0")))
    return cell.stack_directions(g, ys, 2), cell.stack_directions(g, hs, 0), cell.stack_directions(g, cs, 0)


def concat_grouped(g: GraphBuilder, values: list[str], axis: int) -> str:
    """Concat with at most MAX_CONCAT_INPUTS inputs per node, as a tree."""
    while len(values) > 1:
        values = [values[k] if len(values[k:k + MAX_CONCAT_INPUTS]) == 1 else
                  g.op("Concat", *values[k:k + MAX_CONCAT_INPUTS], axis=axis)
                  for k in range(0, len(values), MAX_CONCAT_INPUTS)]
    return values[0]


def _index(g: GraphBuilder, t: int) -> str:
    return g.cached(("index", t), lambda: g.const(np.asarray(t, np.int64), "index"))
