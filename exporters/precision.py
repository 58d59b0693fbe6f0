"""Reduced precision: int8 dynamic quantization through onnxruntime, and the accuracy either one costs.

The loss is measured against the float32 export on the checkpoint's validation split, in the task's own
metric (RMSE in target units, or accuracy for classifiers), plus the largest output difference.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx


class PrecisionError(ValueError):
    """The model cannot be brought to this precision safely; the message says why."""


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    """quantize_dynamic's weight settings. Activations are always u8 with one range per run.

    The default is chosen so that no int16 pair sum can saturate on a CPU without VNNI
    (runtimes/int8_gemm.py): reduce_range keeps s8 weights in [-64, 64], so |u8*w + u8*w| <= 2*255*64 = 32640
    <= 32767 whatever the activations. onnxruntime quantizes DynamicQuantizeLSTM's W and R as s8 whatever
    `weights` says, per direction, or per gate row with per_channel; reduce_range applies to them too.
    Measured with the emulation on the demo model, native form, max abs vs float32 on its 360 validation
    windows, AVX2 / VNNI: s8 0.44 / 0.032 and s8 per channel 0.99 / 0.027 (both saturate); s8 reduce_range
    0.047 and s8 per channel + reduce_range 0.039 (RMS 0.0100), each the same on both. u8 weights (which only
    the MatMul nodes take) per channel + reduce_range gave 0.031 (RMS 0.0095), but their safety rests on MLAS's
    u8*u8 kernel widening to int16 rather than on the values (7-bit u8 weights in a u8*s8 pair could reach
    64770), for a 5% smaller RMS: not taken.
    """
    weights: str = "s8"
    per_channel: bool = True
    reduce_range: bool = True

    def to_metadata(self) -> dict:
        return {"weights": self.weights, "lstm_weights": "s8", "per_channel": self.per_channel,
                "reduce_range": self.reduce_range, "activations": "u8, one range per run"}


INT8_SETTINGS = Int8Settings()
PREPROCESS_HINT = "Please consider to run pre-processing before quantization"


@contextlib.contextmanager
def _without_preprocess_hint():
    """quantize_dynamic logs PREPROCESS_HINT on the root logger; drop that record and nothing else. Without a
    root handler, logging.warning() would install a stderr one for good: lend one for the call instead."""
    root = logging.getLogger()
    lent = None if root.handlers else logging.StreamHandler()
    if lent:
        lent.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        root.addHandler(lent)
    hint = logging.Filter()
    hint.filter = lambda record: not str(record.msg).startswith(PREPROCESS_HINT)
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
        if lent:
            root.removeHandler(lent)


def check_quantizable(model: onnx.ModelProto) -> None:
    """quantize_dynamic rewrites LSTM to com.microsoft DynamicQuantizeLSTM, which keeps P but silently drops
    the layout attribute: a layout=1 (batch-first) LSTM would come back reading time as batch."""
    for node in model.graph.node:
        if node.op_type == "LSTM" and any(a.name == "layout" and a.i == 1 for a in node.attribute):
            raise PrecisionError(f"{node.name}: --quantize int8 would corrupt an LSTM with layout=1 "
                                 "(onnxruntime's DynamicQuantizeLSTM drops the attribute); export with layout 0")


def quantize_int8(model: onnx.ModelProto, settings: Int8Settings | None = None) -> onnx.ModelProto:
    """Weights to int8, activations quantized per call (onnxruntime.quantization.quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = settings or INT8_SETTINGS
    check_quantizable(model)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        with _without_preprocess_hint():
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8 if settings.weights == "s8" else QuantType.QUInt8,
                             per_channel=settings.per_channel, reduce_range=settings.reduce_range)
        quantized = onnx.load(dst)
    del quantized.metadata_props[:]
    return quantized


def accuracy_loss(ckpt, float_model: onnx.ModelProto, candidate: onnx.ModelProto, max_items: int = 512) -> dict:
    """The candidate's metric against float32's on up to `max_items` validation windows (ORT CPU)."""
    from lstm_onnx.pipeline.data import load_dataset
    from lstm_onnx.pipeline.metrics import task_metrics

    cfg = ckpt.config
    try:
        val = load_dataset(cfg.data).val
    except (OSError, ValueError) as exc:
        return {"skipped": f"no validation set: {str(exc).splitlines()[0]}"}
    if val.x.shape[-1] != cfg.model.input_size:
        return {"skipped": f"the data config yields {val.x.shape[-1]} features, the model takes "
                           f"{cfg.model.input_size}"}
    x = val.x[:max_items]
    preds = [_predict(m, x, cfg.model) for m in (float_model, candidate)]
    if isinstance(preds[0], str):
        return {"skipped": preds[0]}
    if cfg.model.head != "classify" and preds[0].shape != val.y[:max_items].shape:
        return {"skipped": f"the model's outputs {list(preds[0].shape[1:])} do not fit the data's targets "
                           f"{list(val.y.shape[1:])}"}
    metric = "accuracy" if cfg.model.head == "classify" else "rmse"
    split = dataclasses.replace(val, x=x, y=val.y[:max_items])
    values = [task_metrics(p, split, cfg, ckpt.normalization, ckpt.feature_names, ckpt.target_names)
              for p in preds]
    return {"metric": metric, "items": int(len(x)), "float32": values[0][metric], "candidate": values[1][metric],
            "delta": values[1][metric] - values[0][metric],
            "max_abs": float(np.abs(preds[1].astype(np.float64) - preds[0]).max())}


def _predict(model: onnx.ModelProto, x: np.ndarray, mcfg):
    """y (batch-major) of `model` for x [N, S, F]; static-shape models run in chunks of their batch."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    dims = inputs["x"].shape
    seq_axis, batch_axis = (1, 0) if mcfg.batch_first else (0, 1)
    if isinstance(dims[seq_axis], int) and dims[seq_axis] != x.shape[1]:
        return f"the model's static sequence length {dims[seq_axis]} differs from the data's window {x.shape[1]}"
    chunk = dims[batch_axis] if isinstance(dims[batch_axis], int) else 256
    out = []
    for s in range(0, len(x), chunk):
        xb = x[s:s + chunk]
        n = len(xb)
        if n < chunk and isinstance(dims[batch_axis], int):
            xb = np.concatenate([xb, np.zeros((chunk - n,) + xb.shape[1:], xb.dtype)])
        feeds = {"x": xb if mcfg.batch_first else np.ascontiguousarray(xb.transpose(1, 0, 2))}
        if "lengths" in inputs:
            feeds["lengths"] = np.full(len(xb), xb.shape[1], np.int32)
        if "h0" in inputs:
            L, _, H = inputs["h0"].shape
            feeds["h0"] = feeds["c0"] = np.zeros((L, len(xb), H), np.float32)
        y = sess.run(["y"], feeds)[0]
        if mcfg.head == "sequence" and not mcfg.batch_first:
            y = y.transpose(1, 0, 2)
        out.append(y[:n])
    return np.concatenate(out)
