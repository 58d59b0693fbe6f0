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

from lstm_onnx.exporters.errors import ExportError


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
