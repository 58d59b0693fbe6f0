"""check-data's checks, each on a crafted CSV that has exactly that problem, and on the bundled CO2 data."""
from __future__ import annotations

import numpy as np
import pytest

from lstm_onnx.pipeline.config import DataConfig, load_run_config
from lstm_onnx.pipeline import quality
from lstm_onnx.pipeline.quality import _ks_statistic, _leakage, check_csv

N = 400


def clean_columns(seed: int = 0) -> dict[str, np.ndarray]:
    """Two iid uniform features and a target: no outliers, no drift, no leak, nothing constant."""
    rng = np.random.default_rng(seed)
    return {"date": np.arange(20000101, 20000101 + N).astype(float), "a": rng.uniform(-1, 1, N),
            "b": rng.uniform(-1, 1, N), "y": rng.uniform(-1, 1, N)}


def write_csv(path, cols: dict, override: dict | None = None) -> str:
    """cols as CSV; override maps (column, row) -> the text written there instead."""
    override = override or {}
    names = list(cols)
    lines = [",".join(names)]
    for r in range(N):
        lines.append(",".join(override.get((n, r), repr(float(cols[n][r]))) for n in names))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def report(tmp_path, cols=None, override=None, **cfg):
    csv = write_csv(tmp_path / "d.csv", cols or clean_columns(), override)
    kwargs = dict(task="csv", csv=csv, drop_columns=["date"], time_column="date", targets=["y"], window=10)
    kwargs.update(cfg)
    return check_csv(DataConfig(**kwargs))


def kinds(rep) -> set[tuple[str, str, str]]:
    return {(f.severity, f.check, f.column) for f in rep.findings}


def test_clean_csv_has_no_findings(tmp_path):
    rep = report(tmp_path)
    assert rep.findings == []
    assert [c.name for c in rep.columns] == ["a", "b", "y"]


def test_missing_value_is_an_error_under_the_default_policy_and_a_warning_when_handled(tmp_path):
    override = {("a", 7): ""}
    assert ("error", "missing", "a") in kinds(report(tmp_path, override=override))
    rep = report(tmp_path, override=override, missing="interpolate")
    assert kinds(rep) == {("warning", "missing", "a")}
    assert "line 9" in rep.findings[0].message  # header is line 1, row 7 is line 9


def test_constant_feature_warns_and_constant_target_refuses(tmp_path):
    cols = clean_columns()
    cols["b"] = np.full(N, 5.0)
    assert kinds(report(tmp_path, cols)) == {("warning", "constant", "b")}
    cols = clean_columns()
    cols["y"] = np.full(N, 1.0)
    assert ("error", "constant", "y") in kinds(report(tmp_path, cols))


def test_duplicate_timestamp_warns_and_time_going_back_refuses(tmp_path):
    cols = clean_columns()
    cols["date"][100] = cols["date"][99]
    assert kinds(report(tmp_path, cols)) == {("warning", "time", "date")}
    cols = clean_columns()
    cols["date"][100], cols["date"][101] = cols["date"][101], cols["date"][100]
    rep = report(tmp_path, cols)
    assert kinds(rep) == {("error", "time", "date")}
    assert "line 103" in rep.findings[0].message


def test_iso_dates_are_read_as_timestamps(tmp_path):
    cols = clean_columns()
    days = np.datetime64("2001-01-01") + np.arange(N)
    override = {("date", r): str(days[r]) for r in range(N)}
    override[("date", 50)] = str(days[10])
    assert kinds(report(tmp_path, cols, override)) == {("error", "time", "date")}


def test_outlier_is_found_by_robust_z_score(tmp_path):
    cols = clean_columns()
    cols["a"][200] = 50.0
    rep = report(tmp_path, cols)
    assert kinds(rep) == {("warning", "outliers", "a")}
    assert "line 202" in rep.findings[0].message and rep.columns[0].outliers == 1


def test_value_beyond_float32_refuses(tmp_path):
    rep = report(tmp_path, override={("b", 10): "1e39"})
    assert ("error", "float32-overflow", "b") in kinds(rep)
    assert "line 12" in next(f for f in rep.findings if f.check == "float32-overflow").message


def test_text_in_a_numeric_column_refuses(tmp_path):
    rep = report(tmp_path, override={("a", 3): "abc", ("a", 5): "n/a?"})
    finding = next(f for f in rep.findings if f.check == "not-a-number")
    assert (finding.severity, finding.column) == ("error", "a") and "2 value(s)" in finding.message


def test_drift_between_splits_is_found(tmp_path):
    cols = clean_columns()
    cols["b"][int(N * 0.85):] += 1.0  # the test split (last 15 %) moved by half its range: no outliers
    rep = report(tmp_path, cols)
    assert kinds(rep) == {("warning", "drift", "b")}
    b = rep.columns[1]
    assert b.drift["test"] > 0.4 and b.drift["val"] < 0.3


def test_feature_that_is_the_future_target_is_leakage(tmp_path):
    cols = clean_columns()
    cols["leak"] = np.roll(cols["y"], -2)  # leak[t] = y[t + 2]
    rep = report(tmp_path, cols)
    leak = [f for f in rep.findings if f.check == "leakage"]
    assert [(f.column, f.severity) for f in leak] == [("leak", "warning")] and "2 step(s)" in leak[0].message


def test_the_targets_own_past_is_not_leakage(tmp_path):
    cols = clean_columns()
    rep = report(tmp_path, cols, features=["a", "y"])
    assert rep.findings == []


def leak_reference(values, names, inputs, targets, max_shift):
    """The scan written out pair by pair with np.corrcoef: {(feature, target): first shift}."""
    out = {}
    for f in inputs:
        for t in targets:
            x, y = values[:, names.index(f)], values[:, names.index(t)]
            for s in range(1, max_shift + 1):
                a, b = x[:-s], y[s:]
                if f != t and np.ptp(a) > 0 and np.ptp(b) > 0 and np.corrcoef(a, b)[0, 1] > quality.LEAK_CORR:
                    out[(f, t)] = s
                    break
    return out


def test_vectorised_leakage_scan_equals_the_pair_by_pair_one():
    """Leaks planted at shifts 1, 3 and 5 (one a scaled, offset copy), a near-miss (r about 0.999), a constant
    and an all-NaN column among 40 noise columns: the matrix scan flags exactly what corrcoef does."""
    rng = np.random.default_rng(7)
    n, cfg = 300, DataConfig(task="csv", csv="unused.csv", window=4, horizon=1)
    values = rng.normal(size=(n, 45))
    values[:, 40] = np.roll(values[:, 0], -1)
    values[:, 41] = 1e6 + 3 * np.roll(values[:, 1], -3)
    values[:, 42] = np.roll(values[:, 2], -5) + rng.normal(0, 0.03, n)  # r ~ 0.9995: not a copy
    values[:, 43], values[:, 44] = 2.5, np.nan
    names = [f"c{j}" for j in range(45)]
    targets = names[:5] + ["c43", "c44"]
    found = {(f.column, f.message.split("'")[1], int(f.message.split("shifted ")[1].split()[0]))
             for f in _leakage(values, names, names, targets, cfg)}
    expected = leak_reference(values, names, names, targets, cfg.window + cfg.horizon)
    assert found == {(f, t, s) for (f, t), s in expected.items()}
    assert {(f, t) for f, t, _ in found} >= {("c40", "c0"), ("c41", "c1")} and ("c42", "c2") not in expected
    assert ("c40", "c0", 1) in found and ("c41", "c1", 3) in found


def test_wide_short_csv_is_not_scanned_for_chance_correlations(tmp_path):
    """Five rows give r > 0.9999 by chance for 1 pair in 20,000: the scan needs MIN_LEAK_ROWS and says so."""
    x = np.random.default_rng(0).normal(size=(5, 300))
    names = [f"c{j}" for j in range(300)]
    (tmp_path / "w.csv").write_text(",".join(names) + "\n" + "\n".join(",".join(map(repr, r)) for r in x) + "\n")
    rep = check_csv(DataConfig(task="csv", csv=str(tmp_path / "w.csv")))
    leak = [f for f in rep.findings if f.check == "leakage"]
    assert [f.column for f in leak] == ["(scan)"] and "needs 10 rows" in leak[0].message


def test_leakage_scan_over_budget_subsamples_rows_and_says_so(monkeypatch):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(4000, 6))
    values[:, 5] = np.roll(values[:, 0], -2)
    names = [f"c{j}" for j in range(6)]
    monkeypatch.setattr(quality, "LEAK_BUDGET", 6 * 6 * 5 * 100)  # 100 rows per shift
    leak = _leakage(values, names, names, names, DataConfig(task="csv", csv="unused.csv", window=4, horizon=1))
    assert [(f.column, "shifted 2 step" in f.message) for f in leak] == [("c5", True), ("(scan)", False)]
    assert "one row in 40" in leak[1].message
    monkeypatch.setattr(quality, "LEAK_BUDGET", 6 * 6 * 10)  # MIN_LEAK_ROWS rows, one shift
    leak = _leakage(values, names, names, names, DataConfig(task="csv", csv="unused.csv", window=4, horizon=1))
    assert [f.column for f in leak] == ["(scan)"] and "shifts 1..1 of 1..5" in leak[0].message


def test_leakage_findings_are_capped():
    values = np.random.default_rng(2).normal(size=(100, 1))
    values = np.hstack([values, np.repeat(np.roll(values, -1), 30, axis=1)])  # 30 copies of the future target
    names = [f"c{j}" for j in range(31)]
    leak = _leakage(values, names, names, ["c0"], DataConfig(task="csv", csv="unused.csv", window=2, horizon=1))
    assert len(leak) == quality.MAX_LEAK_FINDINGS + 1 and "10 more" in leak[-1].message


def test_ks_statistic_equals_scipys():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.3, 2.0):
        a, b = rng.normal(size=200), rng.normal(shift, size=57)
        assert _ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_bundled_co2_data_has_only_explained_findings():
    """Weeks without a measurement (interpolated, as configured) and a few real week-on-week jumps of ~2 ppm
    in the differenced series; no errors, no drift (differencing removes the trend), no leak."""
    rep = check_csv(load_run_config("configs/co2.toml").data)
    assert rep.errors == []
    assert {f.check for f in rep.warnings} <= {"missing", "outliers"}
    co2 = rep.columns[0]
    assert co2.drift["val"] < 0.3 and co2.drift["test"] < 0.3


def test_a_timestamp_column_is_the_time_not_a_missing_constant_target(tmp_path):
    """Before: 'missing 3000' and 'ERROR [constant] timestamp: the target never changes'."""
    rng = np.random.default_rng(0)
    lines = ["timestamp,load,temp"] + [f"2024-01-{1 + h // 24:02d}T{h % 24:02d}:00:00,{rng.uniform():.4f},"
                                       f"{rng.uniform():.4f}" for h in range(24 * 20)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    rep = check_csv(DataConfig(task="csv", csv=str(tmp_path / "d.csv")))
    assert [c.name for c in rep.columns] == ["load", "temp"]
    assert rep.findings == []
    del lines[100]  # an hour missing: a gap, found through the timestamps
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    rep = check_csv(DataConfig(task="csv", csv=str(tmp_path / "d.csv")))
    assert kinds(rep) == {("warning", "time", "timestamp")} and "1 gap(s)" in rep.findings[0].message


def test_findings_are_per_series(tmp_path):
    """Series b alone goes back in time and has an outlier; a, interleaved with it, is clean."""
    rng = np.random.default_rng(1)
    rows = ["t,id,x,y"]
    for t in range(600):
        for s in ("a", "b"):
            stamp = 450 if (s == "b" and t == 460) else t
            x = 50.0 if (s == "b" and t == 40) else rng.uniform()
            rows.append(f"{stamp},{s},{x},{rng.uniform()}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    rep = check_csv(DataConfig(task="csv", csv=str(tmp_path / "d.csv"), time_column="t", series_column="id",
                               targets=["y"], window=10))
    assert {(f.series, f.severity, f.check, f.column) for f in rep.findings} == {
        ("b", "error", "time", "t"), ("b", "warning", "outliers", "x")}
    assert "series 'b', t:" in "\n".join(rep.lines())
    assert [c.name for c in rep.columns] == ["x", "y"]  # neither the time nor the id is a column of the model
