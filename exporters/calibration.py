"""Static (calibrated) int8: onnxruntime's quantize_static in QDQ format, calibrated on training windows.

What it quantizes, measured with onnxruntime 1.32 (docs/forms.md): there is no QDQ LSTM, so the native form's
LSTM nodes stay float32 and keep P; only the head (Gemm -> QGemm after ORT's fusion) and, in the decomposed
form, the input projection outside the Scan become int8. The unrolled form is quantized through and through,
the peephole products and the cell state included (QLinearMul, QLinearAdd, QLinearSigmoid).

Activations are uint8 and weights int8 (U8S8). Without VNNI (AVX2-only x86), onnxruntime's U8S8 GEMM multiplies
with VPMADDUBSW, which adds each pair of u8 x s8 products in saturating int16: 2 x 255 x 127 = 64,770 overflows
32,767. reduce_range keeps weights to 7 bits (|w| <= 64): 2 x 255 x 64 = 32,640 fits, so the sums cannot
saturate there (arithmetic, not a run: the development VM has VNNI, where the products add in int32).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from lstm_onnx.exporters.precision import PrecisionError

CALIBRATION_WINDOWS = 256  # training windows the activation ranges are taken from
CALIBRATION_BATCH = 32


def training_windows(ckpt, limit: int = CALIBRATION_WINDOWS) -> np.ndarray:
    """Up to `limit` normalized training windows [N, S, F] of the checkpoint's own data, evenly spaced over the
    split; PrecisionError when the data cannot be loaded (calibration needs it)."""
    from lstm_onnx.pipeline.data import load_dataset

    cfg = ckpt.config
    try:
        train = load_dataset(cfg.data).train
    except (OSError, ValueError) as exc:
        raise PrecisionError(f"--quantize int8-static calibrates on the checkpoint's training windows, which "
                             f"cannot be loaded ({str(exc).splitlines()[0]}); use --quantize int8 (dynamic)") from None
    if train.x.shape[-1] != cfg.model.input_size or not len(train.x):
        raise PrecisionError(f"--quantize int8-static: the data config yields {len(train.x)} windows of "
                             f"{train.x.shape[-1]} features, the model takes {cfg.model.input_size}; use --quantize int8")
    pick = np.unique(np.linspace(0, len(train.x) - 1, min(limit, len(train.x))).astype(np.int64))
    return np.ascontiguousarray(train.x[pick], dtype=np.float32)


def _feeds(model: onnx.ModelProto, x: np.ndarray, mcfg) -> dict[str, np.ndarray]:
    """The export's feeds for windows x [N, S, F]: x in the model's layout, full lengths, zero states."""
    names = {i.name for i in model.graph.input}
    feeds = {"x": x if mcfg.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))}
    if "lengths" in names:
        feeds["lengths"] = np.full(len(x), x.shape[1], np.int32)
    if "h0" in names:
        feeds["h0"] = feeds["c0"] = np.zeros((mcfg.num_layers * mcfg.num_directions, len(x), mcfg.hidden_size),
                                             np.float32)
    return feeds


class _Windows:
    """onnxruntime.quantization's CalibrationDataReader protocol: feeds, batch after batch, then None."""

    def __init__(self, model: onnx.ModelProto, windows: np.ndarray, mcfg):
        self._batches = iter([_feeds(model, windows[s:s + CALIBRATION_BATCH], mcfg)
                              for s in range(0, len(windows), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8_static(model: onnx.ModelProto, ckpt, windows: np.ndarray | None = None) -> onnx.ModelProto:
    """QDQ int8 of `model`, calibrated (min/max) on `windows` (default: the checkpoint's training windows)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if any(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[:2]):
        raise PrecisionError("--quantize int8-static needs dynamic batch and sequence axes: use --form native or "
                             "decomposed")
    windows = training_windows(ckpt) if windows is None else windows
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(src, dst, _Windows(model, windows, ckpt.model_config), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=True,  # VPMADDUBSW's int16 pair sums on AVX2: see the module docstring
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                        # y and the LSTM's input projection stay float: 256 levels over y's range cost more
                        # (demo model: max abs 0.039 against 0.025) than the int8 matmul saves.
                        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
        quantized = onnx.load(dst)
    del quantized.metadata_props[:]
    return quantized
