import numpy as np
import pytest

from lstm_onnx.runtimes.compare import ParityReport, Tolerances, compare_output, compare_outputs
from lstm_onnx.runtimes.tolerances import Tolerance, default_tolerance


def test_pass_and_fail_follow_atol_plus_rtol():
    ref = np.array([0.0, 100.0], np.float64)
    tol = Tolerance(1e-3, 1e-2)
    assert compare_output("r", "y", ref + [1e-3, 1.0], ref, tol).passed
    row = compare_output("r", "y", ref + [2e-3, 0.0], ref, tol)
    assert not row.passed and row.max_abs == pytest.approx(2e-3, rel=1e-3)


def test_shape_mismatch_missing_and_nan_fail_with_a_note():
    ref = np.zeros((2, 3), np.float32)
    tol = default_tolerance()
    assert "shape" in compare_output("r", "y", np.zeros((3, 2)), ref, tol).note
    assert compare_output("r", "y", None, ref, tol).note == "output missing"
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not compare_output("r", "y", bad, ref, tol).passed


def test_per_output_tolerances_and_report():
    tols = Tolerances(Tolerance(1e-6, 0), {"hn": Tolerance(1e-2, 0)})
    ref = {"y": np.zeros(3), "hn": np.zeros(3)}
    rows = compare_outputs("ort", {"y": np.full(3, 1e-3), "hn": np.full(3, 1e-3)}, ref, tols)
    assert [r.passed for r in rows] == [False, True]
    report = ParityReport("torch", rows, skipped={"openvino": "not installed"})
    assert not report.passed
    text = report.to_table()
    assert "FAIL" in text and "skipped: not installed" in text and text.endswith("FAILED")
    assert '"passed": false' in report.to_json()
    assert report.to_markdown().count("|") > 10


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="known: float32"):
        default_tolerance("bfloat7")
