"""PeepholeLSTM (nn.LSTM's interface, with diagonal peepholes) and the SequenceModel that adds a head."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstm_onnx.core.gates import param_suffix
from lstm_onnx.pipeline.cell import lstm_layer
from lstm_onnx.pipeline.config import ModelConfig


class LegacyExportError(RuntimeError):
    """torch.onnx.export(dynamo=False) was asked to export a PeepholeLSTM."""


class PeepholeLSTM(nn.Module):
    """An LSTM with diagonal peepholes; `peephole=False` is a plain LSTM through the same code path.

    Parameters use nn.LSTM's names and layout (gates i, f, g, o), so a plain nn.LSTM state_dict loads
    into `PeepholeLSTM(peephole=False)`. Peepholes are `peephole_l{k}[_reverse]`, shape [3, H], rows
    (p_i, p_f, p_o).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 peephole: bool = True):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.peephole = bidirectional, peephole
        self.num_directions = 2 if bidirectional else 1
        H = hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else H * self.num_directions
            for d in range(self.num_directions):
                sfx = param_suffix(layer, d)
                self.register_parameter("weight_ih" + sfx, nn.Parameter(torch.empty(4 * H, layer_in)))
                self.register_parameter("weight_hh" + sfx, nn.Parameter(torch.empty(4 * H, H)))
                if bias:
                    self.register_parameter("bias_ih" + sfx, nn.Parameter(torch.empty(4 * H)))
                    self.register_parameter("bias_hh" + sfx, nn.Parameter(torch.empty(4 * H)))
                if peephole:
                    self.register_parameter("peephole" + sfx, nn.Parameter(torch.empty(3, H)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> "PeepholeLSTM":
        """A plain PeepholeLSTM with the weights, dtype and device of an nn.LSTM (no proj_size)."""
        if lstm.proj_size:
            raise ValueError("nn.LSTM with proj_size has no ONNX LSTM equivalent")
        new = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
                  lstm.dropout, lstm.bidirectional, peephole=False)
        source = next(lstm.parameters())
        # load_state_dict copies into the existing tensors, casting to their dtype: convert those first.
        new.to(device=source.device, dtype=source.dtype)
        new.load_state_dict(lstm.state_dict())
        return new

    def layer_params(self, layer: int, direction: int):
        """(w_ih, w_hh, bias, peep) of one layer and direction; bias is b_ih + b_hh or None."""
        sfx = param_suffix(layer, direction)
        bias = getattr(self, "bias_ih" + sfx) + getattr(self, "bias_hh" + sfx) if self.bias else None
        peep = getattr(self, "peephole" + sfx) if self.peephole else None
        return getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx), bias, peep

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None, lengths: Tensor | None = None):
        """x [B, S, I] if batch_first else [S, B, I]; hx (h0, c0) each [L*D, B, H]; lengths [B] (optional).

        Returns output ([B, S, D*H] or [S, B, D*H]) and (h_n, c_n), each [L*D, B, H]. With lengths, outputs
        past an item's length are zero and h_n/c_n are taken at its own last step.
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input of shape [.., .., {self.input_size}], got {list(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
        if torch.onnx.is_in_onnx_export():
            if torch.jit.is_tracing():  # the legacy TorchScript exporter has no way to emit the node with P
                raise LegacyExportError("PeepholeLSTM exports with torch.onnx.export(..., dynamo=True) (or "
                                        "lstm-pipeline export --module); the legacy dynamo=False exporter "
                                        "cannot emit its LSTM node")
            from lstm_onnx.pipeline.onnx_symbolic import onnx_lstm_forward

            out, state = onnx_lstm_forward(self, x, hx, lengths)
            return (out.transpose(0, 1) if self.batch_first else out), state
        S, B, _ = x.shape
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        h0, c0 = hx if hx is not None else (x.new_zeros(LD, B, H), x.new_zeros(LD, B, H))
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device).to(torch.int64)
        h_n, c_n = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                y, h, c = lstm_layer(layer_in, *self.layer_params(layer, d), h0[k], c0[k],
                                     lengths=lengths, reverse=d == 1)
                outs.append(y)
                h_n.append(h)
                c_n.append(c)
            layer_in = torch.cat(outs, 2) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
        out = layer_in.transpose(0, 1) if self.batch_first else layer_in
        return out, (torch.stack(h_n), torch.stack(c_n))


class SequenceModel(nn.Module):
    """PeepholeLSTM + a dense head.

    Heads: `last` and `classify` read the top layer's final hidden state of each direction, concatenated
    ([B, D*H]); `sequence` maps every step's output. The head never sees normalization: inputs and
    regression targets are normalized outside the model.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.lstm = PeepholeLSTM(c.input_size, c.hidden_size, c.num_layers, c.bias, c.batch_first,
                                 c.dropout, c.bidirectional, c.peephole)
        self.head_dropout = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(c.hidden_size * c.num_directions, c.output_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, lengths: Tensor | None = None):
        """Returns (y, (h_n, c_n)). y is [B, O] for last/classify, or [B, S, O] / [S, B, O] for sequence."""
        out, (h_n, c_n) = self.lstm(x, state, lengths)
        if self.config.head == "sequence":
            features = out
        else:
            D = self.config.num_directions
            features = h_n[-D:].transpose(0, 1).reshape(h_n.shape[1], -1)  # [B, D*H]
        return self.head(self.head_dropout(features)), (h_n, c_n)
