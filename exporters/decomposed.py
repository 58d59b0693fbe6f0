"""The decomposed form: the input projection of every step as one MatMul, then a Scan over time.

The Scan body holds the recurrent MatMul, the peephole Muls and the activations, so runtimes whose LSTM
kernel lacks peepholes (ORT CUDA falls back to CPU; OpenVINO drops P silently) run it on plain ops.
sequence_lens becomes a mask: past an item's length the state holds and the output is zero; the reverse
direction therefore starts at each item's own last step, as ONNX's LSTM does.

With `probe`, each Scan also outputs the gate traces of core.probe (`export --form decomposed --probe`), which
become graph outputs probe.l{layer}.d{direction}.{trace}, [seq, batch, H], in time order.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from lstm_onnx.core import probe as probe_names
from lstm_onnx.exporters import cell
from lstm_onnx.exporters.graph import GraphBuilder
from lstm_onnx.exporters.weights import OnnxLSTMWeights

# Probe trace -> the cell.step tap it reads (the identity: a test swaps two to prove the traces are checked).
PROBE_TAPS = {trace: trace for trace in probe_names.TRACES}


def lstm_layer(g: GraphBuilder, x: str, w: OnnxLSTMWeights, layer: int, num_directions: int,
               seq_lens: str | None, h0: str | None, c0: str | None, probe: bool = False) -> tuple[str, str, str]:
    """X [S, B, I] -> (Y [S, B, D*H], Y_h [D, B, H], Y_c [D, B, H]); with `probe`, the traces as graph outputs."""
    H = w.hidden_size
    mask = cell.step_mask(g, x, seq_lens) if seq_lens is not None else None
    ys, hs, cs = [], [], []
    for d in range(num_directions):
        name = f"lstm{layer}" + ("_reverse" if d else "")
        xp = cell.input_projection(g, x, w, d, name)  # [S, B, 4H]
        body = _body(g, w, d, name, H, with_mask=mask is not None, probe=probe)
        states = [cell.initial_state(g, h0, d, x, H), cell.initial_state(g, c0, d, x, H)]
        scanned = [xp] + ([mask] if mask is not None else [])
        if d:  # time-reversed by Slice, not Scan's directions: onnx.reference scans forward only
            scanned = [_reverse_time(g, v) for v in scanned]
        traces = probe_names.TRACES if probe else ()
        h_n, c_n, y, *taps = g.node("Scan", states + scanned, 3 + len(traces), name=f"{name}.scan", body=body,
                                    num_scan_inputs=len(scanned))
        ys.append(_reverse_time(g, y) if d else y)
        for trace, value in zip(traces, taps):
            g.output(_reverse_time(g, value) if d else value, probe_names.trace_name(layer, d, trace), g.float_type,
                     ["seq", "batch", H])
        hs.append(g.op("Unsqueeze", h_n, g.ints([0], "axis0")))
        cs.append(g.op("Unsqueeze", c_n, g.ints([0], "axis0")))
    return cell.stack_directions(g, ys, 2), cell.stack_directions(g, hs, 0), cell.stack_directions(g, cs, 0)


def _reverse_time(g: GraphBuilder, value: str) -> str:
    """[S, ...] -> the same steps, last first."""
    return g.op("Slice", value, g.ints([-1], "minus1"), g.ints([np.iinfo(np.int64).min], "int64_min"),
                g.ints([0], "axis0"), g.ints([-1], "minus1"))


def _body(g: GraphBuilder, w: OnnxLSTMWeights, d: int, name: str, H: int, with_mask: bool, probe: bool = False):
    b = g.subgraph(f"{name}_step")
    ft = g.float_type
    h = b.value_input("h_prev", ft, ["batch", H])
    c = b.value_input("c_prev", ft, ["batch", H])
    xp_t = b.value_input("xp_t", ft, ["batch", 4 * H])
    mask = b.value_input("valid_t", TensorProto.BOOL, ["batch", 1]) if with_mask else None
    r_t, peep = cell.step_weights(b, w, d, name)
    taps = {} if probe else None
    h_next, c_next, y_t = cell.step(b, xp_t, h, c, r_t, peep, H, mask, taps)
    # A scan output must not also be a state output: give y its own name when they coincide.
    if y_t == h_next:
        y_t = b.op("Identity", h_next)
    # Each trace through its own Identity: a body output may appear once only (c is also the state c_next).
    traced = [b.op("Identity", taps[PROBE_TAPS[t]]) for t in probe_names.TRACES] if probe else []
    for value in (h_next, c_next, y_t, *traced):
        b.value_output(value, ft, ["batch", H])
    return b.graph()

