"""Export through torch.onnx (dynamo): PeepholeLSTM becomes ONNX's native LSTM node, P included.

Inside `torch.onnx.export`, PeepholeLSTM.forward calls `onnx_lstm_forward`, which emits one `LSTM` node per
layer with `torch.onnx.ops.symbolic_multi_out`. Its W/R/B/P come from the parameters through
exporters.weights (the one gate-order conversion) and are folded into initializers by the exporter. So any
user model that contains a PeepholeLSTM exports with `torch.onnx.export(model, ..., dynamo=True)`.

torch.onnx can silently freeze the sequence length when it exports more than once in one process (a stale
dispatch cache). `export_via_torch` declares both axes dynamic, and exporters.validate checks every result
for symbolic dims and for parity at sizes the export never saw, so a frozen axis is refused, not written.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
from torch import nn

from exporters.weights import reorder_gates, reorder_peepholes
from pipeline.model import param_suffix


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


class _FlatSignature(nn.Module):
    """SequenceModel with named tensor inputs and outputs, as the ONNX graph will have them."""

    def __init__(self, model, stateful: bool, lengths: bool):
        super().__init__()
        self.model, self.stateful, self.lengths = model, stateful, lengths

    def forward(self, x, lengths=None, h0=None, c0=None):
        y, (h_n, c_n) = self.model(x, (h0, c0) if self.stateful else None, lengths)
        return (y, h_n, c_n) if self.stateful else y


def export_via_torch(ckpt, options, example_batch: int = 2, example_seq: int = 5):
    """An onnx.ModelProto of `ckpt` made by torch.onnx.export(dynamo=True); metadata is added by the caller."""
    try:
        import onnxscript  # noqa: F401 - torch.onnx's dynamo exporter needs it
    except ImportError:
        from exporters.export import ExportError

        raise ExportError("--via torch.onnx needs onnxscript: pip install 'lstm-onnx-pipeline[torch-onnx]' "
                         "(or use --via graph)") from None
    cfg = ckpt.model_config
    model = _FlatSignature(ckpt.build_model(), options.stateful, options.lengths).eval()
    B, S = torch.export.Dim("batch"), torch.export.Dim("seq")
    x_shape = (example_batch, example_seq) if cfg.batch_first else (example_seq, example_batch)
    kwargs = {"x": torch.zeros(*x_shape, cfg.input_size)}
    dyn = {"x": {0: B, 1: S} if cfg.batch_first else {0: S, 1: B}}
    if options.lengths:
        kwargs["lengths"] = torch.full((example_batch,), example_seq, dtype=torch.int32)
        dyn["lengths"] = {0: B}
    if options.stateful:
        state_shape = (cfg.num_layers * cfg.num_directions, example_batch, cfg.hidden_size)
        kwargs.update(h0=torch.zeros(state_shape), c0=torch.zeros(state_shape))
        dyn.update(h0={1: B}, c0={1: B})
    outputs = ["y", "hn", "cn"] if options.stateful else ["y"]
    with _quiet():
        program = torch.onnx.export(model, (), kwargs=kwargs, dynamo=True, dynamic_shapes=dyn,
                                    input_names=list(kwargs), output_names=outputs,
                                    opset_version=options.opset, verbose=False, optimize=True)
    proto = program.model_proto
    proto.producer_name = "lstm-onnx-pipeline (torch.onnx)"
    return proto


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress lines and registration warnings; a CLI export should print one line."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
