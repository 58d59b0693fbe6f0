"""--quantize int8-static: QDQ calibrated on the checkpoint's training windows; the LSTM stays float32 with P,
weights keep to 7 bits (reduce_range, for AVX2's int16 pair sums), and what it costs is in the metadata."""
import numpy as np
import onnx
import pytest
import torch

from lstm_onnx.core import metadata
from lstm_onnx.exporters import calibration
from lstm_onnx.exporters.errors import ExportError
from lstm_onnx.exporters.export import ExportOptions, build_model, export_checkpoint, resolve_options
from tests.helpers import make_checkpoint

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def ckpt():
    return make_checkpoint(seed=3, input_size=3, hidden_size=8, output_size=2)


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "static.onnx"
    return export_checkpoint(ckpt, path, ExportOptions(quantize="int8-static")), path


def init(model, name):
    return onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def test_lstm_stays_float_with_p_and_the_head_is_int8(ckpt, exported):
    model, _ = exported
    float_model = build_model(ckpt, resolve_options(ckpt, ExportOptions()))
    (lstm,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    (ref,) = [n for n in float_model.graph.node if n.op_type == "LSTM"]
    for k in (1, 2, 7):  # W, R and P reach the LSTM as float32, unchanged
        np.testing.assert_array_equal(init(model, lstm.input[k]), init(float_model, ref.input[k]))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    assert meta["quantization"] == "int8-static" and "accuracy" in meta


def test_weights_keep_to_seven_bits(exported):
    """reduce_range: |w| <= 64, so u8 x s8 pair sums (2 x 255 x 64 = 32,640) fit VPMADDUBSW's int16."""
    model, _ = exported
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64


def test_the_head_input_is_calibrated_on_the_training_windows(ckpt, exported):
    """The uint8 scale in front of the head is the range of h_T over the training windows, computed here with
    torch: calibration saw the training data (a reader of zeros or random inputs would give another scale)."""
    model, _ = exported
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    dq = next(n for n in model.graph.node if n.output[0] == gemm.input[0] and n.op_type == "DequantizeLinear")
    scale = float(init(model, dq.input[1]))
    windows = calibration.training_windows(ckpt)
    with torch.no_grad():
        _, (h_n, _) = ckpt.build_model()(torch.from_numpy(windows))
    h = h_n[-1].numpy()
    expected = (max(h.max(), 0.0) - min(h.min(), 0.0)) / 255
    assert scale == pytest.approx(expected, rel=1e-4)


def test_static_shapes_are_refused_in_one_line(ckpt, tmp_path):
    with pytest.raises(ExportError, match="int8-static needs dynamic batch and sequence axes"):
        export_checkpoint(ckpt, tmp_path / "u.onnx", ExportOptions(form="unrolled", seq_len=5, quantize="int8-static"))
    assert not (tmp_path / "u.onnx").exists()


def test_without_training_data_it_is_refused_in_one_line(tmp_path):
    import dataclasses

    ckpt = make_checkpoint()
    ckpt.config = dataclasses.replace(ckpt.config, data=dataclasses.replace(ckpt.config.data, task="csv",
                                                                            csv=str(tmp_path / "gone.csv")))
    with pytest.raises(ExportError, match="calibrates on the checkpoint's training windows.*--quantize int8"):
        export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(quantize="int8-static"))
