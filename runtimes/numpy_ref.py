"""A second reference in float64 numpy, written from the equations, not from the torch code.

It reads a PyTorch-layout state dict (gates i, f, g, o; peepholes [3, H] rows p_i, p_f, p_o).
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import Runner


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def float64_state(state_dict: dict) -> dict[str, np.ndarray]:
    """A state dict (torch tensors or arrays) as float64 numpy arrays."""
    return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float64)
            for k, v in state_dict.items()}


def lstm_direction(x, W, R, b, p, h, c, lengths, reverse, gates: list | None = None):
    """x [S, B, I]; W [4H, I]; R [4H, H]; b [4H]; p (p_i, p_f, p_o) each [H]; h, c [B, H].
    `gates`: a list that gets each step's {"i", "f", "o"} activations, in the order the steps run."""
    S = x.shape[0]
    p_i, p_f, p_o = p
    y = np.zeros((S, x.shape[1], R.shape[1]))
    for t in (range(S - 1, -1, -1) if reverse else range(S)):
        z = x[t] @ W.T + h @ R.T + b
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=1)
        i = sigmoid(z_i + p_i * c)
        f = sigmoid(z_f + p_f * c)
        c_new = f * c + i * np.tanh(z_g)
        o = sigmoid(z_o + p_o * c_new)
        h_new = o * np.tanh(c_new)
        if gates is not None:
            gates.append({"i": i, "f": f, "o": o})
        valid = (t < lengths)[:, None]
        h, c = np.where(valid, h_new, h), np.where(valid, c_new, c)
        y[t] = np.where(valid, h_new, 0.0)
    return y, h, c


class NumpyRunner(Runner):
    name = "numpy"

    def __init__(self, state_dict: dict, model_config, inputs: list[str] = ("x",)):
        super().__init__()
        self.sd = float64_state(state_dict)
        self.cfg = model_config
        self.inputs = list(inputs)

    def _input_names(self):
        return self.inputs

    def _param(self, name, layer, d):
        return self.sd.get(f"lstm.{name}_l{layer}" + ("_reverse" if d else ""))

    def _infer(self, feeds):
        cfg = self.cfg
        x = feeds["x"].astype(np.float64)
        if cfg.batch_first:
            x = x.transpose(1, 0, 2)
        S, B, _ = x.shape
        D, H = cfg.num_directions, cfg.hidden_size
        lengths = feeds["lengths"].astype(np.int64) if "lengths" in feeds else np.full(B, S)
        h0 = feeds["h0"].astype(np.float64) if "h0" in feeds else np.zeros((cfg.num_layers * D, B, H))
        c0 = feeds["c0"].astype(np.float64) if "c0" in feeds else np.zeros((cfg.num_layers * D, B, H))
        h_n, c_n = [], []
        for layer in range(cfg.num_layers):
            ys = []
            for d in range(D):
                k = layer * D + d
                b = np.zeros(4 * H)
                if cfg.bias:
                    b = self._param("bias_ih", layer, d) + self._param("bias_hh", layer, d)
                p = self._param("peephole", layer, d) if cfg.peephole else np.zeros((3, H))
                y, h, c = lstm_direction(x, self._param("weight_ih", layer, d), self._param("weight_hh", layer, d),
                                         b, p, h0[k], c0[k], lengths, reverse=d == 1)
                ys.append(y)
                h_n.append(h)
                c_n.append(c)
            x = np.concatenate(ys, axis=2)
        W, bias = self.sd["head.weight"], self.sd["head.bias"]
        if cfg.head == "sequence":
            out = x @ W.T + bias
            out = out.transpose(1, 0, 2) if cfg.batch_first else out
        else:
            out = np.concatenate(h_n[-D:], axis=1) @ W.T + bias
        f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
        return {"y": f32(out), "hn": f32(np.stack(h_n)), "cn": f32(np.stack(c_n))}
