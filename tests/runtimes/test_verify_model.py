"""verify without a checkpoint: baseline choice, saved inputs/expected outputs, skipped runners, strictness."""
import numpy as np
import onnx
import pytest

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.runtimes.placement import NodePlacement
from lstm_onnx.runtimes.saved_arrays import load_npz
from lstm_onnx.runtimes.verify import VerifyOptions, VerifyReport, model_feeds, verify_model


@pytest.fixture(scope="module")
def ckpt():
    return random_checkpoint(5, 12, seed=1)


@pytest.fixture(scope="module")
def native(ckpt, tmp_path_factory):
    return export_form(ckpt, "native", tmp_path_factory.mktemp("verify") / "native.onnx")


def test_checkpointless_verify_against_ort_cpu(native):
    report = verify_model(native, options=VerifyOptions(runners=("onnx-reference", "onnxruntime-cuda")))
    assert report.parity.reference == "onnxruntime-cpu"
    assert report.passed, report.to_table()
    assert [r.runner for r in report.parity.rows] == ["onnx-reference"]
    assert report.parity.skipped["onnxruntime-cuda"].startswith("unavailable (")
    assert "LSTM" in {p.op_type for p in report.placements["onnxruntime-cpu"]}
    table = report.to_table()
    assert "output y" in table and "placement" in table and "onnxruntime-cuda" in table


def test_checkpoint_runners_are_skipped_without_one(native):
    report = verify_model(native, options=VerifyOptions(runners=("numpy", "onnx-reference")))
    assert "needs a checkpoint" in report.parity.skipped["numpy"]


def test_with_checkpoint_torch_is_the_baseline(ckpt, native):
    report = verify_model(native, ckpt, VerifyOptions(runners=("numpy", "onnxruntime-cpu")))
    assert report.parity.reference == "torch"
    assert report.passed
    assert {r.runner for r in report.parity.rows} == {"numpy", "onnxruntime-cpu"}


def test_saved_inputs_and_outputs_round_trip(native, tmp_path):
    first = verify_model(native, options=VerifyOptions(runners=("onnx-reference",), batch=3, seq=9,
                                                       save_inputs=tmp_path / "in.npz",
                                                       save_outputs=tmp_path / "out.npz"))
    assert first.passed
    assert load_npz(tmp_path / "in.npz", "inputs")["x"].shape == (3, 9, 5)
    again = verify_model(native, options=VerifyOptions(runners=("onnxruntime-cpu",), inputs=tmp_path / "in.npz",
                                                       expected=tmp_path / "out.npz"))
    assert again.parity.reference == "expected:out.npz" and again.passed
    # mutation: shift one saved output element by 1e-3 and the same run must fail
    out = load_npz(tmp_path / "out.npz", "outputs")
    out["y"][0, 0] += 1e-3
    np.savez(tmp_path / "bad.npz", **out)
    bad = verify_model(native, options=VerifyOptions(runners=("onnxruntime-cpu",), inputs=tmp_path / "in.npz",
                                                     expected=tmp_path / "bad.npz"))
    assert not bad.passed
    assert bad.parity.rows[0].max_abs == pytest.approx(1e-3, rel=1e-3)


def test_inputs_that_do_not_fit_are_a_clear_error(native, tmp_path):
    np.savez(tmp_path / "wrong.npz", features=np.zeros((1, 2, 5), np.float32))
    with pytest.raises(ValueError, match="model's inputs are"):
        verify_model(native, options=VerifyOptions(inputs=tmp_path / "wrong.npz"))


def test_unknown_runner_is_an_error(native):
    with pytest.raises(ValueError, match="unknown runner"):
        verify_model(native, options=VerifyOptions(runners=("warp-drive",)))


def test_foreign_dim_names_and_dtypes(native, tmp_path):
    model = onnx.load(str(native))
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = {"batch": "batch_size", "seq": "sequence_length"}[d.dim_param]
    feeds = model_feeds(model, 2, 7, 0)
    assert feeds["x"].shape == (2, 7, 5) and feeds["x"].dtype == np.float32


def test_strict_placement_turns_a_fallback_into_failure(native):
    report = verify_model(native, options=VerifyOptions(runners=("onnx-reference",)))
    assert report.passed
    report.placement_problems.append("LSTM ran on CPUExecutionProvider although cuda was requested")
    assert report.passed  # a warning only...
    strict = VerifyReport(report.parity, report.placements, report.placement_problems, strict_placement=True)
    assert not strict.passed  # ...unless --strict-placement
    assert "strict-placement" in strict.to_table()


def test_json_report_carries_placement(native):
    import json

    report = verify_model(native, options=VerifyOptions(runners=("onnx-reference",)))
    data = json.loads(report.to_json())
    nodes = data["placement"]["onnxruntime-cpu"]["nodes"]
    assert any(n["op_type"] == "LSTM" and n["provider"] == "CPUExecutionProvider" for n in nodes)
    assert data["passed"] is True
    assert NodePlacement(**nodes[0])


def test_missing_runtime_is_skipped_with_install_hint(native, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    report = verify_model(native, options=VerifyOptions(runners=("openvino-cpu", "onnx-reference")))
    assert report.passed and not report.parity.errors
    assert "unavailable" in report.parity.skipped["openvino-cpu"]
    assert "pip install" in report.parity.skipped["openvino-cpu"]


def test_known_wrong_runners_run_and_fail_as_expected(native):
    """OpenVINO drops P: by default it runs, fails, and is reported as an expected failure with the fix."""
    pytest.importorskip("openvino")
    report = verify_model(native)
    assert report.passed, report.to_table()
    ov = [r for r in report.parity.rows if r.runner == "openvino-cpu"]
    assert ov and not any(r.passed for r in ov)
    assert all("LSTM with P" in r.known_wrong and "--form decomposed" in r.known_wrong for r in ov)
    assert "XFAIL, known" in report.to_table()
    named = verify_model(native, options=VerifyOptions(runners=("openvino-cpu",)))
    assert not named.passed  # asked for by name: its failure counts
