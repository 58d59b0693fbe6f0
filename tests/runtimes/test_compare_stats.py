"""Error statistics: p50/p99 of |diff|, --check-error-stat (Polygraphy's semantics), --fail-fast."""
import numpy as np
import pytest

from lstm_onnx.runtimes.compare import ERROR_STATS, ParityReport, compare_output
from lstm_onnx.runtimes.saved_arrays import save_npz
from lstm_onnx.runtimes.tolerances import Tolerance
from lstm_onnx.runtimes.verify import VerifyOptions, verify_model


def _one_outlier():
    """1000 ones, one of them off by 0.5: every statistic but the max stays small."""
    expected = np.ones(1000)
    actual = expected.copy()
    actual[17] += 0.5
    return actual, expected


def test_p50_and_p99_are_percentiles_of_abs_diff():
    rng = np.random.default_rng(3)
    expected = rng.normal(size=(7, 31))
    actual = expected + rng.standard_cauchy(size=expected.shape) * 1e-3
    row = compare_output("r", "y", actual, expected, Tolerance(1e-5, 1e-5))
    diff = np.abs(actual - expected)
    assert row.p50_abs == pytest.approx(np.percentile(diff, 50), rel=1e-12)
    assert row.p99_abs == pytest.approx(np.percentile(diff, 99), rel=1e-12)
    assert row.p50_abs < row.p99_abs < row.max_abs


def test_elementwise_fails_where_mean_median_and_p99_pass():
    actual, expected = _one_outlier()
    tol = Tolerance(1e-3, 0.0)
    assert not compare_output("r", "y", actual, expected, tol).passed  # the default: elemwise
    assert not compare_output("r", "y", actual, expected, tol, "max").passed
    for stat in ("mean", "median", "p99"):  # mean |diff| is 5e-4, the p99 and median 0
        row = compare_output("r", "y", actual, expected, tol, stat)
        assert row.passed and row.error_stat == stat, stat
    failing = compare_output("r", "y", actual, expected, Tolerance(1e-4, 0.0), "mean")
    assert not failing.passed and "mean |diff| 0.0005 > atol 0.0001" in failing.note


def test_a_statistic_passes_within_atol_or_rtol():
    """Polygraphy's rule: a statistic fails only if it exceeds both its tolerances."""
    expected = np.full(100, 1000.0)
    actual = expected + 0.05  # abs 0.05 > atol, rel 5e-5 <= rtol
    assert compare_output("r", "y", actual, expected, Tolerance(1e-3, 1e-4), "max").passed
    assert not compare_output("r", "y", actual, expected, Tolerance(1e-3, 1e-5), "max").passed


@pytest.mark.parametrize("stat", ["max", "mean", "median", "p99"])
def test_verdicts_match_polygraphy(stat):
    pytest.importorskip("polygraphy", reason="Polygraphy is not installed (pip install polygraphy)")
    from polygraphy.comparator import IterationResult
    from polygraphy.comparator.compare import SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    rng = np.random.default_rng(11)
    expected = rng.uniform(0.5, 2.0, size=400) * rng.choice([-1, 1], size=400)  # no zeros: same rel diff
    cases = [rng.normal(size=400) * 1e-3, np.where(rng.random(400) < 0.02, 0.3, 1e-6), np.full(400, 2e-3)]
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        for delta in cases:
            for atol, rtol in [(1e-3, 0.0), (1e-4, 1e-3), (5e-3, 1e-6), (1e-6, 1e-6)]:
                actual = expected + delta
                compare = SimpleCompareFunc(check_error_stat="quantile" if stat == "p99" else stat, atol=atol,
                                            rtol=rtol, error_quantile=0.99)
                theirs = bool(compare(IterationResult({"y": actual}, runner_name="a"),
                                      IterationResult({"y": expected}, runner_name="b"))["y"])
                ours = compare_output("r", "y", actual, expected, Tolerance(atol, rtol), stat).passed
                assert ours == theirs, (stat, atol, rtol, delta[:3])


def test_unknown_statistic_is_one_line():
    with pytest.raises(ValueError, match="choose one of elemwise, max"):
        compare_output("r", "y", np.zeros(2), np.zeros(2), Tolerance(0, 0), "p95")
    assert "p99" in ERROR_STATS


def test_tables_and_json_show_the_percentiles_and_the_statistic():
    actual, expected = _one_outlier()
    row = compare_output("r", "y", actual, expected, Tolerance(1e-3, 0.0), "mean")
    report = ParityReport("ref", [row])
    assert "p99 abs" in report.to_table() and "0.001/0 on mean" in report.to_table()
    assert '"p99_abs": 0.0' in report.to_json() and '"error_stat": "mean"' in report.to_json()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lstm_onnx.bench.models import export_form, random_checkpoint

    return export_form(random_checkpoint(4, 8, seed=2), "native", tmp_path_factory.mktemp("stats") / "model.onnx")


def _off_by(model, where, delta: float):
    """Feeds and baseline outputs shifted by delta, so every runner fails at atol 1e-5."""
    report = verify_model(model, options=VerifyOptions(runners=("onnx-reference",), batch=2, seq=5,
                                                       save_inputs=where / "in.npz", save_outputs=where / "out.npz"))
    from lstm_onnx.runtimes.saved_arrays import load_npz

    save_npz(where / "off.npz", {k: v + np.float32(delta) for k, v in load_npz(where / "out.npz", "x").items()})
    assert report.passed
    return where / "in.npz", where / "off.npz"


def test_fail_fast_stops_after_the_first_failing_runner(model, tmp_path):
    feeds, off = _off_by(model, tmp_path, 1e-2)
    runners = ("onnx-reference", "onnxruntime-cpu")
    full = verify_model(model, options=VerifyOptions(runners=runners, inputs=feeds, expected=off))
    assert [r.runner for r in full.rows] == list(runners) and full.status == "FAILED"
    fast = verify_model(model, options=VerifyOptions(runners=runners, inputs=feeds, expected=off, fail_fast=True))
    assert [r.runner for r in fast.rows] == ["onnx-reference"] and fast.status == "FAILED"
    assert fast.skipped == {"onnxruntime-cpu": "not run: --fail-fast"}


def test_fail_fast_runs_every_runner_that_passes(model, tmp_path):
    feeds, _ = _off_by(model, tmp_path, 0.0)
    runners = ("onnx-reference", "onnxruntime-cpu")
    report = verify_model(model, options=VerifyOptions(runners=runners, inputs=feeds, expected=tmp_path / "out.npz",
                                                       fail_fast=True))
    assert report.passed and [r.runner for r in report.rows] == list(runners) and not report.skipped


def test_verify_checks_the_chosen_statistic(model, tmp_path):
    feeds, off = _off_by(model, tmp_path, 1e-2)
    tol = dict(runners=("onnx-reference",), inputs=feeds, expected=off)
    from lstm_onnx.runtimes.verify import explicit_tolerances

    loose = explicit_tolerances(2e-2, 0.0)  # every |diff| is ~1e-2: a max of 2e-2 passes, 5e-3 fails
    assert verify_model(model, options=VerifyOptions(**tol, tolerances=loose, error_stat="max")).passed
    tight = explicit_tolerances(5e-3, 0.0)
    report = verify_model(model, options=VerifyOptions(**tol, tolerances=tight, error_stat="max"))
    assert report.status == "FAILED" and "max |diff|" in report.failures()[0]
