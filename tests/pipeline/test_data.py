"""CSV loading, windows, time splits and train-only normalization, checked against plain numpy."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.pipeline.config import DataConfig, load_run_config
from lstm_onnx.pipeline.data import CSVError, load_dataset, read_csv

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def cfg(path, **kw) -> DataConfig:
    base = dict(task="csv", csv=str(path), window=4, horizon=1, val_fraction=0.2, test_fraction=0.2)
    base.update(kw)
    return DataConfig(**base)


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=(60, 2)), axis=0)
    rows = [[20000101 + i, *np.round(values[i], 4)] for i in range(60)]
    return write_csv(tmp_path / "t.csv", ["date", "a", "b"], rows), np.round(values, 4)


def test_windows_targets_and_train_only_normalization(table):
    path, values = table
    data = load_dataset(cfg(path, drop_columns=["date"], targets=["b"], horizon=2))
    n_train = 60 - 12 - 12
    mean, std = values[:n_train].mean(0), values[:n_train].std(0)
    np.testing.assert_allclose(data.normalization.input_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(data.normalization.target_std, std[1:], rtol=1e-5)
    raw_x0 = data.train.x[0] * std + mean
    np.testing.assert_allclose(raw_x0, values[0:4], atol=1e-3)
    np.testing.assert_allclose(data.train.y[0] * std[1] + mean[1], values[4 + 1, 1], atol=1e-3)
    # the first test target is the first step after train + val: nothing crosses the split
    np.testing.assert_allclose(data.test.y[0] * std[1] + mean[1], values[n_train + 12, 1], atol=1e-3)
    assert len(data.val.x) == 12 and len(data.test.x) == 12
    assert data.feature_names == ["a", "b"] and data.target_names == ["b"]


def test_normalization_ignores_test_values(table, tmp_path):
    path, values = table
    before = load_dataset(cfg(path, drop_columns=["date"])).normalization.input_mean
    lines = path.read_text().splitlines()
    lines[-1] = "20991231,1e6,1e6"
    path.write_text("\n".join(lines) + "\n")
    after = load_dataset(cfg(path, drop_columns=["date"])).normalization.input_mean
    np.testing.assert_array_equal(before, after)


def test_features_can_exclude_the_target(table):
    path, _ = table
    data = load_dataset(cfg(path, features=["a"], targets=["b"]))
    assert data.train.x.shape[2] == 1 and data.feature_names == ["a"] and data.target_names == ["b"]


def test_difference(table):
    path, values = table
    data = load_dataset(cfg(path, drop_columns=["date"], difference=True))
    d = np.diff(values, axis=0)
    raw = data.train.x[0] * data.normalization.input_std + data.normalization.input_mean
    np.testing.assert_allclose(raw, d[0:4], atol=1e-3)


def test_missing_values(tmp_path):
    rows = [[i, float(i)] for i in range(40)]
    rows[5][1] = ""
    path = write_csv(tmp_path / "m.csv", ["t", "v"], rows)
    with pytest.raises(CSVError, match=r"1 missing value.*line 7, column 'v'.*interpolate"):
        read_csv(cfg(path))
    values, _ = read_csv(cfg(path, missing="interpolate"))
    assert values[5, 1] == pytest.approx(5.0)
    values, _ = read_csv(cfg(path, missing="drop"))
    assert len(values) == 39 and 5.0 not in values[:, 1]


def test_non_numeric_column(tmp_path):
    path = write_csv(tmp_path / "n.csv", ["when", "v"], [[f"day{i}", i] for i in range(40)])
    with pytest.raises(CSVError, match=r"line 2, column 'when': 'day0' is not a number.*drop_columns"):
        load_dataset(cfg(path))
    assert load_dataset(cfg(path, drop_columns=["when"])).feature_names == ["v"]


def test_dropping_every_column_is_refused(table):
    path, _ = table
    with pytest.raises(CSVError, match="no input column is left after dropping date, a, b"):
        read_csv(cfg(path, drop_columns=["date", "a", "b"]))


def test_too_few_rows(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["v"], [[i] for i in range(20)])
    with pytest.raises(CSVError, match=r"20 usable rows.*too few.*window 10"):
        load_dataset(cfg(path, window=10))


def test_unknown_column_and_missing_file(tmp_path, table):
    path, _ = table
    with pytest.raises(CSVError, match=r"no column 'c'; columns: date, a, b"):
        load_dataset(cfg(path, features=["c"]))
    with pytest.raises(CSVError, match="CSV not found"):
        load_dataset(cfg(tmp_path / "nope.csv"))
    with pytest.raises(CSVError, match="ragged|fields"):
        bad = tmp_path / "r.csv"
        bad.write_text("a,b\n1,2\n3\n")
        read_csv(cfg(bad))


def test_shipped_co2_matches_its_readme():
    csv = ROOT / "data" / "co2_mauna_loa_weekly.csv"
    digest = hashlib.sha256(csv.read_bytes()).hexdigest()
    assert digest in (ROOT / "data" / "README.md").read_text()
    config = load_run_config(ROOT / "configs" / "co2.toml")
    data = load_dataset(config.data)
    assert data.train.x.shape[1:] == (52, 1)
    # 2284 rows -> 2283 weekly changes -> windows: train 1547, val/test 342 each
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (1547, 342, 342)


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("v\n1\n\n2\nx\n")
    with pytest.raises(CSVError, match="line 5, column 'v': 'x'"):
        read_csv(cfg(path))


@pytest.mark.parametrize("text", ["1e39", "-3.5e38", "1e300"])
def test_values_beyond_float32_are_refused_by_line_and_column(tmp_path, text):
    """float32 tops out at 3.4e38: such a value would train into a model that outputs inf."""
    rows = [[i, i * 0.5] for i in range(40)]
    rows[7][1] = text
    path = write_csv(tmp_path / "big.csv", ["a", "b"], rows)
    with pytest.raises(CSVError, match=rf"line 9, column 'b': {text} is beyond float32"):
        read_csv(cfg(path))
    rows[7][1] = "3.4e38"  # just inside float32: kept, and finite once cast
    values, _ = read_csv(cfg(write_csv(tmp_path / "edge.csv", ["a", "b"], rows)))
    assert np.isfinite(values.astype(np.float32)).all() and values[7, 1] == 3.4e38


def test_difference_beyond_float32_is_refused(tmp_path):
    rows = [[3e38 if i % 2 else -3e38] for i in range(40)]
    path = write_csv(tmp_path / "d.csv", ["v"], rows)
    with pytest.raises(CSVError, match="difference of data rows 1 and 2 in column 'v' is beyond float32"):
        load_dataset(cfg(path, difference=True))


def test_a_field_over_the_csv_limit_and_text_that_is_not_utf8(tmp_path):
    huge = tmp_path / "huge.csv"
    huge.write_text("a,b\n1,2\n" + "1" * (129 << 10) + ",3\n")
    with pytest.raises(CSVError, match=r"huge.csv line 3: field larger than field limit"):
        read_csv(cfg(huge))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"a,b\n1,2\n\xff\xfe,3\n")
    with pytest.raises(CSVError, match=r"bin.csv is not UTF-8 text"):
        read_csv(cfg(binary))


@pytest.mark.parametrize("line,message", [
    ("epochs = 1.5", "epochs must be an integer, got 1.5"), ("epochs = 0", "epochs must be >= 1, got 0"),
    ('epochs = "3"', "epochs must be an integer, got '3'"), ("epochs = true", "epochs must be an integer"),
    ("threads = -1", "threads must be >= 0, got -1"), ('lr = "fast"', "lr must be a number"),
    ("lr = nan", "lr must be > 0, got nan"), ("seed = -2", "seed must be >= 0"),
])
def test_config_values_of_the_wrong_kind_are_refused(tmp_path, line, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[train]\n{line}\n")
    with pytest.raises(ValueError, match=message):
        load_run_config(path)


def test_a_value_set_after_loading_gets_the_same_checks(tmp_path):
    """What `train --epochs 0` does: RunConfig.validate is the check a config file's value gets."""
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 2\nlr = 1\n")
    config = load_run_config(path)
    config.validate()
    assert config.train.lr == 1  # an integer where a float is expected is still a number
    config.train.epochs = 0
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        config.validate()


def long_table(tmp_path, n: int = 40) -> Path:
    """Two series interleaved row by row (the usual long format): `a` counts up from 1000, `b` down from -1000;
    an ISO timestamp column and a text id column, neither of them a feature."""
    rows = []
    for t in range(n):
        stamp = f"2024-01-{1 + t // 24:02d}T{t % 24:02d}:00:00"
        rows += [[stamp, "a", 1000.0 + t, 2.0 * t], [stamp, "b", -1000.0 - t, -3.0 * t]]
    return write_csv(tmp_path / "long.csv", ["when", "id", "v", "w"], rows)


def raw(split, norm_of, names):
    """The split's inputs and targets in raw units, window by window (each with its series' statistics)."""
    xs, ys = [], []
    for x, y, s in zip(split.x, split.y, split.series):
        n = norm_of(names[s])
        xs.append(x * n.input_std + n.input_mean)
        ys.append(y * n.target_std + n.target_mean)
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize("normalize", ["global", "series"])
def test_windows_and_splits_never_cross_a_series(tmp_path, normalize):
    data = load_dataset(cfg(long_table(tmp_path), series_column="id", targets=["v"], normalize=normalize))
    assert data.feature_names == ["v", "w"] and data.series_names == ["a", "b"]  # no timestamp, no id
    last_target = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        x, y = raw(split, data.normalization_of, data.series_names)
        sign = np.where(split.series == 0, 1.0, -1.0)
        # one series per window, consecutive rows of it: v moves by exactly 1 per step, in its own direction
        np.testing.assert_allclose(np.diff(x[:, :, 0], axis=1), np.repeat(sign[:, None], 3, 1), atol=1e-3)
        np.testing.assert_allclose(y[:, 0], x[:, -1, 0] + sign, atol=1e-3)  # horizon 1, same series
        steps = np.abs(y[:, 0]) - 1000
        for s in (0, 1):
            mine = steps[split.series == s]
            assert mine.min() > last_target.get(s, -1), f"{name} of series {s} starts before the last split ends"
            last_target[s] = mine.max()


def test_per_series_normalization_is_each_series_train_segment(tmp_path):
    data = load_dataset(cfg(long_table(tmp_path), series_column="id", targets=["v"], normalize="series"))
    n_train = 40 - 8 - 8
    t = np.arange(n_train, dtype=np.float64)
    want = {"a": (1000 + t, 2 * t), "b": (-1000 - t, -3 * t)}
    for name, (v, w) in want.items():
        norm = data.series_normalization[name]
        np.testing.assert_allclose(norm.input_mean, [v.mean(), w.mean()], rtol=1e-6)
        np.testing.assert_allclose(norm.input_std, [v.std(), w.std()], rtol=1e-5)
        np.testing.assert_allclose(norm.target_mean, [v.mean()], rtol=1e-6)
    glob = load_dataset(cfg(long_table(tmp_path), series_column="id", targets=["v"])).normalization
    both = np.concatenate([want["a"][0], want["b"][0]])
    np.testing.assert_allclose(glob.input_mean[0], both.mean(), atol=1e-3)
    np.testing.assert_allclose(glob.input_std[0], both.std(), rtol=1e-5)


def test_a_series_too_short_for_its_splits_is_named(tmp_path):
    path = long_table(tmp_path)
    text = path.read_text().splitlines()
    path.write_text("\n".join(text + ["2024-01-01T00:00:00,c,1,1"] * 3) + "\n")
    with pytest.raises(CSVError, match="series 'c': 3 usable rows"):
        load_dataset(cfg(path, series_column="id", targets=["v"]))


def test_a_date_column_is_recognised_not_read_as_a_feature(tmp_path):
    path = long_table(tmp_path)
    data = load_dataset(cfg(path, series_column="id"))
    assert data.feature_names == ["v", "w"] and data.columns["time"] == "when"


def test_bundled_stocks_data_makes_five_series():
    config = load_run_config(ROOT / "configs" / "stocks.toml")
    data = load_dataset(config.data)
    assert data.series_names == ["MSFT", "AMZN", "IBM", "GOOG", "AAPL"]
    counts = np.bincount(data.train.series, minlength=5)
    # 123 months (68 for GOOG) give 122 (67) changes; train keeps 122 - 2 * int(0.2 * 122) = 74 (41) of them,
    # and windows of 6 with horizon 1 start at 74 - 6 = 68 (35) places
    assert counts.tolist() == [68, 68, 68, 35, 68]
    assert set(data.series_normalization) == set(data.series_names)
