"""float16 and int8 exports (accuracy against float32 recorded), the capability table, opsets."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lstm_onnx.core import metadata
from lstm_onnx.exporters.export import ExportError, ExportOptions, build_model, export_checkpoint
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.exporters.opsets import OpsetError, max_opset
from lstm_onnx.exporters.precision import PrecisionError, check_quantizable
from lstm_onnx.runtimes import capabilities
from lstm_onnx.runtimes.tolerances import default_tolerance
from tests.helpers import make_checkpoint


def data_checkpoint(**kw):
    """A model whose data config yields a validation set it can read (10 features -> 10 targets)."""
    ckpt = make_checkpoint(input_size=4, output_size=4, **kw)
    ckpt.config.data.num_features, ckpt.config.data.length, ckpt.config.data.window = 4, 600, 20
    ckpt.feature_names = ckpt.target_names = [f"f{k}" for k in range(4)]
    return ckpt


@pytest.mark.parametrize("form", ["decomposed", "unrolled"])
def test_float16_export_reports_its_accuracy(tmp_path, form):
    ckpt = data_checkpoint(num_layers=2)
    static = dict(seq_len=20, batch_size=16) if FORMS[form].static_shapes else {}
    model = export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(form=form, dtype="float16", stateful=True,
                                                                       lengths=True, **static))
    inits = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert {t.data_type for t in inits} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay float32
    acc = metadata.read(str(tmp_path / "m.onnx"))["accuracy"]
    assert acc["metric"] == "rmse" and acc["items"] > 0
    assert 0 < acc["max_abs"] < default_tolerance("float16").atol
    assert abs(acc["delta"]) < 1e-3 * acc["float32"]


@pytest.mark.parametrize("form", ["native", "decomposed"])
def test_int8_export_is_quantized_and_reports_its_accuracy(tmp_path, form):
    ckpt = data_checkpoint()
    model = export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(form=form, quantize="int8", lengths=True))
    ops = {n.op_type for n in model.graph.node}
    assert ("DynamicQuantizeLSTM" if form == "native" else "MatMulInteger") in ops
    meta = metadata.read(str(tmp_path / "m.onnx"))
    assert meta["quantization"] == "int8" and meta["form"] == form
    assert meta["int8"] == {"weights": "s8", "lstm_weights": "s8", "per_channel": True, "reduce_range": True,
                            "activations": "u8, one range per run"}
    acc = meta["accuracy"]
    assert 0 < acc["max_abs"] < default_tolerance("int8").atol


@pytest.mark.slow
def test_int8_validation_also_runs_as_a_cpu_without_vnni(tmp_path, demo_checkpoint, monkeypatch):
    """With full 8-bit weights the demo model passes on this CPU's ORT if it has VNNI, yet saturates on one
    without: export validation must refuse it either way, and write nothing."""
    from lstm_onnx.exporters import precision
    from lstm_onnx.exporters.validate import ValidationError

    monkeypatch.setattr(precision, "INT8_SETTINGS", precision.Int8Settings(per_channel=False, reduce_range=False))
    with pytest.raises(ValidationError, match=r"int8 emulated avx2 +y +0\.1\d* .* FAIL"):
        export_checkpoint(demo_checkpoint, tmp_path / "m.onnx", ExportOptions(quantize="int8"))
    assert not (tmp_path / "m.onnx").exists()
    monkeypatch.undo()
    export_checkpoint(demo_checkpoint, tmp_path / "m.onnx", ExportOptions(quantize="int8"))  # the chosen ones pass


def test_inspect_shows_the_int8_settings_and_whether_they_can_saturate(tmp_path):
    from lstm_onnx.exporters.precision import Int8Settings, quantize_int8
    from lstm_onnx.runtimes.inspect import describe, format_description

    ckpt = data_checkpoint()
    model = export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(quantize="int8"))
    text = format_description(describe(model))
    assert ("int8: s8 weights (LSTM s8), per channel, reduce_range (7-bit); activations u8, one range per run; "
            "widest int16 pair sum cannot saturate without VNNI (32640 <= 32767)") in text
    old = quantize_int8(build_model(ckpt, ExportOptions()), Int8Settings(per_channel=False, reduce_range=False))
    assert "int8: settings not recorded; widest int16 pair sum CAN saturate on CPUs without VNNI" in \
        format_description(describe(old))


def test_quantizing_drops_only_the_preprocessing_hint(capfd, monkeypatch):
    import logging

    from lstm_onnx.exporters.precision import PREPROCESS_HINT, _without_preprocess_hint

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in the CLI: logging.warning() would install a stderr handler
    with _without_preprocess_hint():
        logging.warning(PREPROCESS_HINT + ". Refer to example: ...")
        logging.warning("a real problem")
    assert root.handlers == [] and not root.filters  # nothing left behind
    err = capfd.readouterr().err
    assert "pre-processing" not in err and "WARNING:root:a real problem" in err


def test_float16_native_is_refused_with_the_reason():
    with pytest.raises(ExportError, match="float32-only"):
        build_model(make_checkpoint(), ExportOptions(dtype="float16"))


def test_quantizing_float16_is_refused():
    with pytest.raises(ExportError, match="drop --dtype float16"):
        build_model(make_checkpoint(), ExportOptions(form="decomposed", dtype="float16", quantize="int8"))


def test_layout_1_is_refused_for_quantization():
    model = build_model(make_checkpoint(), ExportOptions())
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    lstm.attribute.append(onnx.helper.make_attribute("layout", 1))
    with pytest.raises(PrecisionError, match="layout=1"):
        check_quantizable(model)


@pytest.mark.parametrize("target,peephole,lengths,form", [
    ("ort-cuda", True, False, "decomposed"), ("ort-cuda", False, False, "native"),
    ("ort-cpu", True, True, "native"), ("openvino", True, False, "decomposed"),
    ("openvino", False, True, "decomposed"), ("onnx-reference", True, True, "decomposed"),
    ("onnx2torch", True, False, "unrolled"), ("tensorrt", True, False, "native")])
def test_auto_picks_by_the_capability_table(target, peephole, lengths, form):
    assert capabilities.choose_form(target, peephole, lengths) == form


def test_auto_export_for_ort_cuda_has_no_lstm_node(tmp_path):
    model = export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(form="auto", target="ort-cuda"))
    assert not any(n.op_type == "LSTM" for n in model.graph.node)
    meta = metadata.read(str(tmp_path / "m.onnx"))
    assert meta["form"] == "decomposed" and meta["target"] == "onnxruntime-cuda"  # old spelling, canonical key


@pytest.mark.parametrize("options,match", [
    (ExportOptions(form="auto"), "needs --target"), (ExportOptions(form="auto", target="tpu"), "unknown target"),
    (ExportOptions(form="unrolled"), "needs --seq-len"), (ExportOptions(seq_len=5), "only apply to --form unrolled"),
    (ExportOptions(form="fancy"), "unknown form"), (ExportOptions(form="decomposed", dtype="int4"), "unknown dtype")])
def test_bad_option_combinations_are_clear_errors(options, match):
    with pytest.raises(ExportError, match=match):
        build_model(make_checkpoint(), options)


def test_inspect_lists_native_runtimes():
    from lstm_onnx.runtimes.inspect import describe, format_description

    native = describe(build_model(make_checkpoint(), ExportOptions()))
    assert native["native_runtimes"]["onnxruntime-cpu"] == [] and native["native_runtimes"]["openvino-cpu"]
    decomposed = describe(build_model(make_checkpoint(), ExportOptions(form="decomposed")))
    assert decomposed["native_runtimes"]["openvino-cpu"] == [] and decomposed["needs"] == ["scan"]
    assert "runs natively on: onnxruntime-cpu, onnxruntime-cuda, openvino-cpu" in format_description(decomposed)


@pytest.mark.parametrize("form", FORMS)
def test_oldest_and_newest_opsets_run(tmp_path, form):
    static = dict(seq_len=4, batch_size=2) if FORMS[form].static_shapes else {}
    for opset in (14, max_opset()):
        model = export_checkpoint(make_checkpoint(bidirectional=True), tmp_path / "m.onnx",
                                  ExportOptions(form=form, opset=opset, lengths=True, **static))
        assert model.opset_import[0].version == opset


@pytest.mark.parametrize("opset", [13, 10_000])
def test_opset_outside_the_range_is_a_clear_error(opset):
    with pytest.raises(OpsetError, match=f"opset {opset} is not supported: choose 14..{max_opset()}"):
        build_model(make_checkpoint(), ExportOptions(form="decomposed", opset=opset))


def test_readme_and_docs_tables_are_the_generated_ones():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme, docs = (root / "README.md").read_text(), (root / "docs" / "runtimes.md").read_text()
    assert capabilities.render_markdown(why=False) in readme, \
        "regenerate: python -m lstm_onnx.runtimes.capabilities --readme"
    assert capabilities.render_markdown() in docs, "regenerate: python -m lstm_onnx.runtimes.capabilities"


def test_float16_runs_on_ort_cpu_close_to_float32():
    ckpt = make_checkpoint(num_layers=2)
    x = np.random.default_rng(0).standard_normal((4, 30, 3)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa
        None, {"x": x})[0]
    y32 = run(build_model(ckpt, ExportOptions(form="decomposed")))
    y16 = run(build_model(ckpt, ExportOptions(form="decomposed", dtype="float16")))
    assert 0 < np.abs(y16 - y32).max() < default_tolerance("float16").atol
