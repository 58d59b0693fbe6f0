"""Checkpoint -> ONNX: the shared skeleton (I/O, layout, layers, head, metadata) around a per-form layer."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from exporters import native
from exporters.graph import FLOAT, GraphBuilder, final_features
from exporters.opsets import check_opset, ir_version_for
from exporters.weights import layer_weights
from pipeline import __version__
from pipeline.checkpoint import Checkpoint
from pipeline.fileio import atomic_path
from runtimes import metadata

FORMS = {"native": native.lstm_layer}


class ExportError(ValueError):
    """The requested export cannot be made; the message says what to change."""


@dataclass
class ExportOptions:
    form: str = "native"
    stateful: bool = False  # h0/c0 inputs and hn/cn outputs
    lengths: bool = False  # a per-item `lengths` input mapped to sequence_lens
    opset: int | None = None


def build_model(ckpt: Checkpoint, options: ExportOptions, checkpoint_sha256: str = "") -> onnx.ModelProto:
    cfg = ckpt.model_config
    if options.form not in FORMS:
        raise ExportError(f"unknown form {options.form!r}; choose one of: {', '.join(FORMS)}")
    if options.stateful and cfg.bidirectional:
        raise ExportError("--stateful needs a unidirectional model: a bidirectional LSTM reads the whole "
                          "sequence backwards, so it cannot be streamed chunk by chunk")
    opset = check_opset(options.opset)
    D, H, L = cfg.num_directions, cfg.hidden_size, cfg.num_layers
    g = GraphBuilder("lstm_onnx_pipeline")
    seq_dims = ["batch", "seq"] if cfg.batch_first else ["seq", "batch"]
    x = g.input("x", FLOAT, seq_dims + [cfg.input_size])
    xt = g.op("Transpose", x, perm=[1, 0, 2]) if cfg.batch_first else x  # [S, B, I]
    seq_lens = g.input("lengths", TensorProto.INT32, ["batch"]) if options.lengths else None
    h0 = c0 = None
    if options.stateful:
        h0 = g.input("h0", FLOAT, [L * D, "batch", H])
        c0 = g.input("c0", FLOAT, [L * D, "batch", H])
    layer = FORMS[options.form]
    sd = ckpt.state_dict
    y_hs, y_cs = [], []
    for k in range(L):
        h0_k = c0_k = None
        if options.stateful:
            start, end, axis = g.ints([k * D], "start"), g.ints([(k + 1) * D], "end"), g.ints([0], "axis0")
            h0_k, c0_k = g.op("Slice", h0, start, end, axis), g.op("Slice", c0, start, end, axis)
        xt, y_h, y_c = layer(g, xt, layer_weights(sd, k, D), k, D, seq_lens, h0_k, c0_k)
        y_hs.append(y_h)
        y_cs.append(y_c)
    _head(g, ckpt, xt, y_hs[-1])
    if options.stateful:
        for name, parts in (("hn", y_hs), ("cn", y_cs)):
            g.output(g.op("Concat", *parts, axis=0) if L > 1 else parts[0], name, FLOAT, [L * D, "batch", H])
    model = helper.make_model(g.graph(), opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir_version_for(opset), producer_name="lstm-onnx-pipeline",
                              producer_version=__version__)
    _annotate(model, ckpt, options, opset, checkpoint_sha256)
    return model


def _head(g: GraphBuilder, ckpt: Checkpoint, y: str, y_h: str) -> None:
    cfg = ckpt.model_config
    w = _np(ckpt.state_dict["head.weight"])  # [O, D*H]
    b = _np(ckpt.state_dict["head.bias"])
    if cfg.head == "sequence":
        out = g.op("Add", g.op("MatMul", y, g.const(w.T.copy(), "head.weight_t")), g.const(b, "head.bias"))
        if cfg.batch_first:
            out = g.op("Transpose", out, perm=[1, 0, 2])
        dims = (["batch", "seq"] if cfg.batch_first else ["seq", "batch"]) + [cfg.output_size]
    else:
        features = final_features(g, y_h, cfg.num_directions)
        out = g.op("Gemm", features, g.const(w, "head.weight"), g.const(b, "head.bias"), transB=1)
        dims = ["batch", cfg.output_size]
    g.output(out, "y", FLOAT, dims)


def _annotate(model, ckpt: Checkpoint, options: ExportOptions, opset: int, sha256: str) -> None:
    import dataclasses

    io = {"inputs": {"x": "normalized features, " + ("[batch, seq, F]" if ckpt.model_config.batch_first
                                                     else "[seq, batch, F]")},
          "outputs": {"y": f"{ckpt.model_config.head} head output (normalized targets or logits)"}}
    if options.lengths:
        io["inputs"]["lengths"] = "int32 [batch]: valid steps per item (ONNX sequence_lens)"
    if options.stateful:
        io["inputs"].update(h0="[layers*directions, batch, H] initial hidden state", c0="initial cell state")
        io["outputs"].update(hn="final hidden state, as h0", cn="final cell state, as c0")
    props = metadata.encode({
        "version": __version__, "form": options.form, "config": dataclasses.asdict(ckpt.config),
        "normalization": ckpt.normalization.to_dict(), "feature_names": ckpt.feature_names,
        "target_names": ckpt.target_names, "checkpoint_sha256": sha256, "io": io,
        "stateful": options.stateful, "opset": opset})
    helper.set_model_props(model, props)


def _np(value) -> np.ndarray:
    return value.detach().cpu().numpy().astype(np.float32) if hasattr(value, "detach") else np.asarray(value)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_checkpoint(ckpt: Checkpoint, out: str | Path, options: ExportOptions | None = None,
                      checkpoint_sha256: str = "", validate: bool = True) -> onnx.ModelProto:
    """Build, validate against PyTorch, then write atomically. Nothing is written if validation fails."""
    from exporters.validate import validate_model

    options = options or ExportOptions()
    model = build_model(ckpt, options, checkpoint_sha256)
    if validate:
        validate_model(model, ckpt, options)
    with atomic_path(out) as tmp:
        onnx.save(model, tmp)
    return model
