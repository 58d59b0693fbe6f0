"""The LSTM step as plain ONNX ops, shared by the decomposed (Scan) and unrolled forms.

Weights are ONNX's (from exporters.weights): W/R blocks in gate order i, o, f, c; P = [p_i, p_o, p_f].

    i = σ(z_i + p_i ⊙ c_prev)       z = x W^T + h_prev R^T + (Wb + Rb)
    f = σ(z_f + p_f ⊙ c_prev)
    c = f ⊙ c_prev + i ⊙ tanh(z_c)
    o = σ(z_o + p_o ⊙ c)             the output gate peeks at the NEW cell
    h = o ⊙ tanh(c)

With a mask (sequence_lens), an item past its length keeps its state and outputs zero.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from lstm_onnx.exporters.graph import GraphBuilder
from lstm_onnx.exporters.weights import OnnxLSTMWeights


def input_projection(g: GraphBuilder, x: str, w: OnnxLSTMWeights, d: int, name: str) -> str:
    """x [S, B, I] -> x W^T + Wb + Rb  [S, B, 4H]: one MatMul over every step at once."""
    xp = g.op("MatMul", x, g.fconst(w.W[d].T, f"{name}.W_t"))
    if w.B is None:
        return xp
    H4 = 4 * w.hidden_size
    return g.op("Add", xp, g.fconst(w.B[d][:H4] + w.B[d][H4:], f"{name}.b"))


def step_weights(g: GraphBuilder, w: OnnxLSTMWeights, d: int, name: str):
    """(R^T [H, 4H], (p_i, p_o, p_f) each [H] or None) as initializers of `g`."""
    r_t = g.fconst(w.R[d].T, f"{name}.R_t")
    if w.P is None:
        return r_t, None
    p_i, p_o, p_f = np.split(w.P[d], 3)
    return r_t, (g.fconst(p_i, f"{name}.p_i"), g.fconst(p_o, f"{name}.p_o"), g.fconst(p_f, f"{name}.p_f"))


def step(g: GraphBuilder, xp_t: str, h: str, c: str, r_t: str, peep, H: int, mask: str | None,
         taps: dict | None = None):
    """One step: xp_t [B, 4H], h/c [B, H], mask [B, 1] bool or None -> (h_next, c_next, y_t).

    `taps`, if a dict, receives the value names of the probe's traces (core.probe.TRACES) at this step.
    """
    z = g.op("Add", xp_t, g.op("MatMul", h, r_t))
    split = g.cached(("split4", H), lambda: g.ints([H] * 4, "split4"))
    z_i, z_o, z_f, z_c = g.node("Split", [z, split], 4, axis=1)
    peep_i = peep_f = peep_o = None
    if peep is not None:
        p_i, p_o, p_f = peep
        peep_i, peep_f = g.op("Mul", p_i, c), g.op("Mul", p_f, c)
        z_i, z_f = g.op("Add", z_i, peep_i), g.op("Add", z_f, peep_f)
    i, f = g.op("Sigmoid", z_i), g.op("Sigmoid", z_f)
    c_new = g.op("Add", g.op("Mul", f, c), g.op("Mul", i, g.op("Tanh", z_c)))
    if peep is not None:
        peep_o = g.op("Mul", peep[1], c_new)
        z_o = g.op("Add", z_o, peep_o)
    o = g.op("Sigmoid", z_o)
    h_new = g.op("Mul", o, g.op("Tanh", c_new))
    if taps is not None:
        nothing = lambda: g.op("Mul", c, g.fconst(np.zeros(()), "zero"))  # noqa: E731  (no P: the terms are 0)
        taps.update(i=i, f=f, o=o, c=c_new, pre_i=z_i, pre_f=z_f, pre_o=z_o, peep_i=peep_i or nothing(),
                    peep_f=peep_f or nothing(), peep_o=peep_o or nothing())
    if mask is None:
        return h_new, c_new, h_new
    zero = g.cached("zero", lambda: g.fconst(np.zeros(()), "zero"))
    return (g.op("Where", mask, h_new, h), g.op("Where", mask, c_new, c), g.op("Where", mask, h_new, zero))


def initial_state(g: GraphBuilder, state: str | None, d: int, x: str, H: int) -> str:
    """Direction d's [B, H] slice of a given [D, B, H] state, or zeros shaped from x [S, B, I]."""
    if state is not None:
        return g.op("Gather", state, g.cached(("index", d), lambda: g.const(np.asarray(d, np.int64), "index")),
                    axis=0)
    batch = g.op("Gather", g.op("Shape", x), g.ints([1], "axis1"))
    shape = g.op("Concat", batch, g.ints([H], "hidden"), axis=0)
    zero = numpy_helper.from_array(np.zeros(1, g.np_float), "value")
    return g.op("ConstantOfShape", shape, value=zero)


def step_mask(g: GraphBuilder, x: str, seq_lens: str) -> str:
    """[S, B, 1] bool: step t of item b is valid (t < seq_lens[b])."""
    seq = g.op("Gather", g.op("Shape", x), g.const(np.asarray(0, np.int64), "index"))
    t = g.op("Range", g.const(np.asarray(0, np.int64), "zero_i"), seq, g.const(np.asarray(1, np.int64), "one_i"))
    lengths = g.op("Unsqueeze", g.op("Cast", seq_lens, to=TensorProto.INT64), g.ints([0], "axis0"))  # [1, B]
    valid = g.op("Less", g.op("Unsqueeze", t, g.ints([1], "axis1")), lengths)  # [S, B]
    return g.op("Unsqueeze", valid, g.ints([2], "axis2"))


def stack_directions(g: GraphBuilder, per_direction: list[str], axis: int) -> str:
    return per_direction[0] if len(per_direction) == 1 else g.op("Concat", *per_direction, axis=axis)
