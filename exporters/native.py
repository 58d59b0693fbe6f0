"""The native form: one ONNX `LSTM` node per layer, with the peepholes in input P (layout 0, float32)."""
from __future__ import annotations

from lstm_onnx.exporters.graph import GraphBuilder, merge_directions
from lstm_onnx.exporters.weights import OnnxLSTMWeights


def lstm_layer(g: GraphBuilder, x: str, w: OnnxLSTMWeights, layer: int, num_directions: int,
               seq_lens: str | None, h0: str | None, c0: str | None) -> tuple[str, str, str]:
    """X [S, B, I] -> (Y [S, B, D*H], Y_h [D, B, H], Y_c [D, B, H])."""
    name = f"lstm{layer}"
    inputs = [x, g.const(w.W, f"{name}.W"), g.const(w.R, f"{name}.R"),
              g.const(w.B, f"{name}.B") if w.B is not None else "",
              seq_lens or "", h0 or "", c0 or "",
              g.const(w.P, f"{name}.P") if w.P is not None else ""]
    while inputs[-1] == "":
        inputs.pop()
    direction = "bidirectional" if num_directions == 2 else "forward"
    y, y_h, y_c = g.node("LSTM", inputs, 3, name=name, hidden_size=w.hidden_size, direction=direction)
    return merge_directions(g, y, num_directions), y_h, y_c
