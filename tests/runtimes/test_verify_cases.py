"""verify never crashes and never fails without a reason: the six models (and inputs) that used to end in a
traceback, a KeyError or a silent FAILED, each exported by the project or built by hand."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes.verify import (
    EXIT_CODES,
    FAILED,
    NOTHING_COMPARED,
    PASSED,
    VerifyOptions,
    model_feeds,
    verify_model,
)
from tests import models
from tests.helpers import make_checkpoint


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


def export(tmp_path, ckpt, name, **options):
    path = tmp_path / f"{name}.onnx"
    export_checkpoint(ckpt, path, ExportOptions(**options))
    return path


# 1. OpenVINO renames inputs that an early node also writes (lengths -> cast_out, x -> transpose_out)
@pytest.mark.parametrize("batch_first,options", [
    (True, dict(form="decomposed", lengths=True)),
    (True, dict(form="unrolled", seq_len=1, stateful=True)),
    (False, dict(form="decomposed", dtype="float16")),
], ids=["decomposed-lengths", "unrolled-1-stateful", "time-major-float16"])
def test_openvino_is_fed_by_the_models_input_names(tmp_path, batch_first, options):
    pytest.importorskip("openvino")
    from lstm_onnx.runtimes.openvino import OpenVINORunner

    ckpt = make_checkpoint(batch_first=batch_first)
    path = export(tmp_path, ckpt, "m", **options)
    with OpenVINORunner(path) as ov:
        assert ov.input_names == [i.name for i in onnx.load(path).graph.input]
    report = verify_model(path, ckpt, VerifyOptions(runners=("openvino-cpu",)))
    assert report.status == PASSED and not report.errors, report.to_table()
    assert {r.runner for r in report.rows} == {"openvino-cpu"}


# 2. int8: onnx.reference has no DynamicQuantizeLSTM, as the capability table says
def test_int8_model_is_refused_by_onnx_reference_not_a_traceback(tmp_path):
    ckpt = make_checkpoint()
    path = export(tmp_path, ckpt, "int8", quantize="int8")
    report = verify_model(path, ckpt)
    assert "DynamicQuantizeLSTM" in report.skipped["onnx-reference"]
    assert report.skipped["onnx-reference"].startswith("refused")
    assert report.status == PASSED and {"numpy", "onnxruntime-cpu"} <= {r.runner for r in report.rows}
    named = verify_model(path, ckpt, VerifyOptions(runners=("onnx-reference",)))
    assert named.status == NOTHING_COMPARED and named.exit_code == EXIT_CODES[NOTHING_COMPARED] == 3


def layout_1_lstm(path, peepholes: bool) -> None:
    """One LSTM node with layout=1 (batch-major X, Y, states), initial states as inputs."""
    I, H = 3, 4
    rng = np.random.default_rng(0)
    weights = [("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H))] + ([("P", (1, 3 * H))] * peepholes)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in weights]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", I])]
    ins += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, H]) for n in ("h0", "c0")]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"] + ["P"] * peepholes, ["y", "hn", "cn"],
                            hidden_size=H, layout=1, name="lstm")
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 1, H])]
    outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, H]) for n in ("hn", "cn")]
    model = helper.make_model(helper.make_graph([node], "layout1", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def layout_0_copy(path):
    """The layout=1 model as layout=0: time-major x and y, states [D, batch, H]."""
    model = onnx.load(path)
    next(a for a in model.graph.node[0].attribute if a.name == "layout").i = 0
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        old = [onnx.TensorShapeProto.Dimension() for _ in dims]
        for copy, dim in zip(old, dims):
            copy.CopyFrom(dim)
        for k, source in enumerate((1, 2, 0, 3) if vi.name == "y" else (1, 0, 2)):
            dims[k].CopyFrom(old[source])
    return model


# 3. layout=1: ORT refuses it at load, OpenVINO raises during inference
@pytest.mark.parametrize("peepholes", [False, True])
def test_layout_1_errors_are_reported_per_runner(tmp_path, peepholes):
    pytest.importorskip("openvino")
    path = tmp_path / "layout1.onnx"
    layout_1_lstm(path, peepholes)
    report = verify_model(path)
    assert report.reference == "onnx-reference"  # the table says ORT CPU refuses layout=1
    assert report.skipped["onnxruntime-cpu"].startswith("refused, as the capability table says")
    assert one_line(report.errors["openvino-cpu"]) and "OpenVINO" in report.errors["openvino-cpu"]
    assert "layout=1: wrong" in report.uncounted_errors["openvino-cpu"]
    assert report.status == NOTHING_COMPARED, report.to_table()
    named = verify_model(path, options=VerifyOptions(runners=("openvino-cpu",)))
    assert named.status == FAILED and named.exit_code == 1
    assert named.failures() == [f"openvino-cpu: ERROR: {named.errors['openvino-cpu']}"]


# 4. torch.onnx's export: OpenVINO cannot compile it, but OpenVINO was not named and is wrong for P anyway
def test_openvino_failing_to_compile_does_not_fail_an_unnamed_run(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    ckpt = make_checkpoint(input_size=10, hidden_size=50, output_size=1)
    path = export(tmp_path, ckpt, "torch-onnx", via="torch.onnx")
    report = verify_model(path, ckpt)
    assert report.status == PASSED, report.to_table()
    if "openvino-cpu" in report.errors:  # OpenVINO 2026.4: "LSTMSequence ... expects Constant for port 5"
        assert one_line(report.errors["openvino-cpu"]) and "could not compile" in report.errors["openvino-cpu"]
        assert "LSTM with P: wrong" in report.uncounted_errors["openvino-cpu"]
        named = verify_model(path, ckpt, VerifyOptions(runners=("openvino-cpu",)))
        assert named.status == FAILED and "openvino-cpu: ERROR" in named.failures()[0]
    else:
        assert all(r.known_wrong for r in report.rows if r.runner == "openvino-cpu")


# 5. every runner skipped: said so, with its own exit code and the reasons in the JSON
def test_a_run_where_every_runner_was_skipped_says_so(tmp_path):
    import json

    path = models.export(models.checkpoint(), tmp_path / "m.onnx")
    report = verify_model(path, options=VerifyOptions(runners=("numpy",)))
    assert report.status == NOTHING_COMPARED and report.exit_code == 3
    assert "needs a checkpoint" in report.skipped["numpy"]
    data = json.loads(report.to_json())
    assert data["status"] == NOTHING_COMPARED and data["exit_code"] == 3 and not data["passed"]
    assert "needs a checkpoint" in data["skipped"]["numpy"]
    assert report.to_table().splitlines()[-1].startswith("NOTHING COMPARED: no runner that counts")


def test_a_failure_always_says_why(tmp_path):
    path = models.export(models.checkpoint(), tmp_path / "m.onnx")
    ok = verify_model(path, options=VerifyOptions(runners=("onnx-reference",), save_inputs=tmp_path / "in.npz",
                                                  save_outputs=tmp_path / "out.npz"))
    assert ok.status == PASSED
    with np.load(tmp_path / "out.npz") as saved:
        shifted = {k: saved[k] + np.float32(0.01) for k in saved.files}
    np.savez(tmp_path / "shifted.npz", **shifted)
    report = verify_model(path, options=VerifyOptions(runners=("onnxruntime-cpu",), inputs=tmp_path / "in.npz",
                                                      expected=tmp_path / "shifted.npz"))
    assert report.status == FAILED and report.exit_code == 1
    assert report.failures() == ["onnxruntime-cpu y: max abs 0.01 over atol 1e-05 + rtol 1e-05·|baseline|"]
    assert report.to_dict()["failures"] == report.failures()
    assert report.to_table().splitlines()[-2:] == ["FAILED:", "- " + report.failures()[0]]


# 6. --inputs arrays of the wrong dtype or shape: one line that says how to fix them
@pytest.mark.parametrize("change,message", [
    (lambda f: f.update(x=f["x"].astype(np.float64)), "input 'x' is float64; the model takes float32"),
    (lambda f: f.update(x=f["x"][0]), "the model takes 3 dims"),
    (lambda f: f.update(x=np.zeros((4, 23, 5), np.float32)), "input 'x' has shape [4, 23, 5]"),
    (lambda f: f.update(lengths=f["lengths"][:2]), "dim 'batch' is 2 in 'lengths' but 4 in 'x'"),
    (lambda f: f.update(lengths=f["lengths"].astype(np.float32)), "input 'lengths' is float32"),
])
def test_inputs_of_the_wrong_dtype_or_shape_are_one_line_errors(tmp_path, change, message):
    path = models.export(models.checkpoint(), tmp_path / "m.onnx", lengths=True)
    feeds = model_feeds(onnx.load(path), 4, 23, 0)
    change(feeds)
    np.savez(tmp_path / "in.npz", **feeds)
    with pytest.raises(ValueError) as err:
        verify_model(path, options=VerifyOptions(inputs=tmp_path / "in.npz"))
    assert message in str(err.value) and one_line(str(err.value))
