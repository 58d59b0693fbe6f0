"""The integer-GEMM emulation: its saturation arithmetic by hand, its VNNI/AVX2 paths against onnxruntime on this
CPU, and what it shows about int8 settings on the kind of CPU this machine is not."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from lstm_onnx.exporters.export import ExportOptions, build_model, resolve_options
from lstm_onnx.exporters.precision import INT8_SETTINGS, Int8Settings, quantize_int8
from lstm_onnx.runtimes.feeds import onnx_input_shapes, random_feeds
from lstm_onnx.runtimes.int8_gemm import (INT16_MAX, host_isa, integer_gemm, pair_sums_saturated,
                                          quantize_activations, run_quantized, widest_pair_sum)
from lstm_onnx.runtimes.tolerances import default_tolerance

QUANTUM_FLIP = 1e-2
TODAY = Int8Settings(weights="s8", per_channel=False, reduce_range=False)  # the settings before reduce_range


def test_pairs_saturate_in_int16_by_hand():
    a = np.array([[255, 255, 255]], np.uint8)
    b = np.array([[127, -128], [127, -128], [127, -128]], np.int8)
    # pairs (k0, k1): 2*255*127 = 64770 -> 32767 and -65280 -> -32768; k2 pairs with the zero padding
    assert pair_sums_saturated(a, b).tolist() == [[32767 + 32385, -32768 - 32640]]
    assert integer_gemm(a, 0, b, np.zeros(2), "vnni").tolist() == [[3 * 32385, -3 * 32640]]
    # the zero-point correction is exact, so the clipped raw sum shows through it: exact is 2*127*127
    a2, b2 = np.array([[255, 255]], np.uint8), np.array([[127], [127]], np.int8)
    assert integer_gemm(a2, 128, b2, [0], "vnni").tolist() == [[32258]]
    assert integer_gemm(a2, 128, b2, [0], "avx2").tolist() == [[32767 - 128 * 254]]
    # 7-bit weights: the widest pair fits
    assert integer_gemm(a2, 0, np.array([[64], [64]], np.int8), [0], "avx2").tolist() == [[32640]]


def test_u8_weights_are_exact_on_both_paths():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (4, 9), np.uint8), rng.integers(0, 256, (9, 3), np.uint8)
    zp = np.array([3, 200, 128])
    exact = (a.astype(np.int64) - 17) @ (b.astype(np.int64) - zp)
    for isa in ("vnni", "avx2"):
        assert (integer_gemm(a, 17, b, zp, isa) == exact).all()


def test_activation_quantization_is_dynamic_quantize_linear():
    x = np.random.default_rng(1).normal(0.3, 2.0, (7, 5)).astype(np.float32)
    node = onnx.helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                                   [onnx.helper.make_tensor_value_info(n, t, None) for n, t in
                                    (("q", onnx.TensorProto.UINT8), ("s", onnx.TensorProto.FLOAT),
                                     ("z", onnx.TensorProto.UINT8))])
    q, s, z = ReferenceEvaluator(onnx.helper.make_model(graph)).run(None, {"x": x})
    ours = quantize_activations(x)
    assert (ours[0] == q).all() and ours[1] == s and ours[2] == z


def test_host_isa_reads_the_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert host_isa(str(info)) == "avx2"
    info.write_text("flags : avx2 avx512f avx512bw avx512_vnni\n")
    assert host_isa(str(info)) == "vnni"
    assert host_isa(str(tmp_path / "missing")) is None


def _quantized(ckpt, form, settings):
    float_model = build_model(ckpt, resolve_options(ckpt, ExportOptions(form=form, lengths=True)))
    return float_model, quantize_int8(float_model, settings)


def _ort(model, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # more threads split DynamicQuantizeLSTM's batch, each part its own scale
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        ["y"], feeds)[0]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["native", "decomposed"])
@pytest.mark.parametrize("settings", [TODAY, INT8_SETTINGS], ids=["s8", "chosen"])
def test_emulation_of_this_cpu_is_onnxruntime(demo_checkpoint, form, settings):
    isa = host_isa()
    if isa is None:
        pytest.skip("no x86 flags to read: which GEMM onnxruntime runs here is unknown")
    _, model = _quantized(demo_checkpoint, form, settings)
    feeds = random_feeds(onnx_input_shapes(model), 5, 13, seed=5)
    y = _ort(model, feeds)
    # Float rounding (<= 3.6e-7 measured on a VNNI EPYC), unless a rounding difference (numpy's exact sigmoid
    # and tanh against MLAS's approximations) flips one u8 activation: one quantum, carried on by the
    # recurrence, measured up to 0.0062 on a 2-layer model. Saturation is far larger: 0.13-0.18.
    assert np.abs(run_quantized(model, feeds, isa, ["y"])[0] - y).max() <= QUANTUM_FLIP
    other = {"vnni": "avx2", "avx2": "vnni"}[isa]
    if settings == TODAY:  # the emulator sees the saturation: the other path gives other numbers
        assert np.abs(run_quantized(model, feeds, other, ["y"])[0] - y).max() > default_tolerance("int8").atol


@pytest.mark.slow
@pytest.mark.parametrize("form", ["native", "decomposed"])
def test_old_settings_saturate_without_vnni_and_the_chosen_ones_cannot(demo_checkpoint, form):
    atol = default_tolerance("int8").atol
    errors = {}
    for name, settings in (("s8", TODAY), ("chosen", INT8_SETTINGS)):
        float_model, model = _quantized(demo_checkpoint, form, settings)
        feeds = random_feeds(onnx_input_shapes(model), 5, 13, seed=5)  # the size export validation checks
        y = _ort(float_model, feeds)
        errors[name] = {isa: float(np.abs(run_quantized(model, feeds, isa, ["y"])[0] - y).max())
                        for isa in ("vnni", "avx2")}
        errors[name]["pair_sum"] = widest_pair_sum(model)
    assert errors["s8"]["vnni"] < atol < errors["s8"]["avx2"], errors  # measured on an AVX2 EPYC: 0.13
    assert errors["s8"]["pair_sum"] > INT16_MAX >= errors["chosen"]["pair_sum"] == 2 * 255 * 64
    assert errors["chosen"]["vnni"] == errors["chosen"]["avx2"] < atol, errors
