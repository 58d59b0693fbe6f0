"""Series and windows: the synthetic task, CSV time series, splits by time, normalization from train."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_onnx.core.series import groups, is_date_column, windows
from lstm_onnx.pipeline.config import DataConfig
from lstm_onnx.pipeline.dataset import Dataset, Normalization, Split
from lstm_onnx.pipeline.tasks import generated_dataset


def synthetic_series(cfg: DataConfig) -> np.ndarray:
    """A multivariate series [length, F]: coupled oscillators with drifting phase and noise.

    Feature k is a sum of two sinusoids of its own periods, plus a lagged, damped copy of feature k-1
    (so the features carry information about each other), plus Gaussian noise of scale `noise`.
    """
    rng = np.random.default_rng(cfg.seed)
    t = np.arange(cfg.length, dtype=np.float64)[:, None]
    F = cfg.num_features
    p1, p2 = rng.uniform(12, 60, F), rng.uniform(80, 300, F)
    a1, a2 = rng.uniform(0.5, 1.5, F), rng.uniform(0.2, 0.8, F)
    phase = rng.uniform(0, 2 * np.pi, (2, F))
    base = a1 * np.sin(2 * np.pi * t / p1 + phase[0]) + a2 * np.sin(2 * np.pi * t / p2 + phase[1])
    coupled = base + 0.5 * np.roll(np.roll(base, 1, axis=1), 3, axis=0)
    return (coupled + cfg.noise * rng.standard_normal(coupled.shape)).astype(np.float32)


def split_sizes(n: int, cfg: DataConfig) -> tuple[int, int, int]:
    """Rows of the train, val and test segments of an n-row series, in time order."""
    n_test, n_val = int(n * cfg.test_fraction), int(n * cfg.val_fraction)
    return n - n_val - n_test, n_val, n_test


def split_by_time(series: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test segments in time order; val and test keep `window` steps of context."""
    n = len(series)
    n_train, n_val, n_test = split_sizes(n, cfg)
    ctx = cfg.window + cfg.horizon - 1
    if min(n_train, n_val, n_test) <= ctx:
        raise ValueError(f"{n} steps are too few to split into train/val/test with window {cfg.window} "
                         f"+ horizon {cfg.horizon}: each split needs more than {ctx} steps")
    return (series[:n_train], series[n_train - ctx:n_train + n_val],
            series[n_train + n_val - ctx:])


class CSVError(ValueError):
    """The CSV cannot feed the task; the message names the file, column and row."""


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _rows(path: Path) -> list[list[str]]:
    """The CSV's rows; CSVError, naming the line, for a field over csv's size limit or text that is not UTF-8."""
    rows: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            rows.extend(reader)
        except csv.Error as exc:
            raise CSVError(f"{path} line {reader.line_num}: {exc} (a field that long is not a number)") from None
        except UnicodeDecodeError:
            raise CSVError(f"{path} is not UTF-8 text after line {reader.line_num}: save it as UTF-8 CSV") from None
    return rows


@dataclass
class CSVTable:
    """A CSV task's rows: the model's columns as numbers, and the rows' time and series."""

    names: list[str]  # the model's columns: inputs, then targets that are not inputs
    values: np.ndarray  # [rows, columns] float64, NaN where missing
    lines: list[int]  # the CSV line of each row
    time_column: str  # data.time_column, or the one column of ISO dates; "" if none
    time: list[str] | None  # each row's timestamp text
    series: list[str] | None  # each row's series id (data.series_column)

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """(series id, its rows in file order) per series; one series "" without data.series_column."""
        return groups(self.series, len(self.values))


def read_table(cfg: DataConfig, header: list[str] | None = None, body: list | None = None) -> CSVTable:
    """`cfg.csv` (or `header` and `body`, [(line, fields)], rows already in memory) as a CSVTable, each cell
    checked; missing values stay NaN."""
    path = Path(cfg.csv) if cfg.csv else Path("data")
    if header is None:
        header, body = csv_body(cfg)
    time_column, names = column_roles(cfg, header, body, path)
    cols = [header.index(n) for n in names]
    values = np.empty((len(body), len(cols)))
    for r, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise CSVError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
        for j, c in enumerate(cols):
            values[r, j] = _number(row[c], path, line, names[j])
    time = [row[header.index(time_column)].strip() for _, row in body] if time_column else None
    series = None
    if cfg.series_column:
        series = [row[header.index(cfg.series_column)].strip() for _, row in body]
        empty = next((line for (line, _), s in zip(body, series) if not s), None)
        if empty is not None:
            raise CSVError(f"{path} line {empty}: no series id in column {cfg.series_column!r}")
    return CSVTable(names, values, [line for line, _ in body], time_column, time, series)


def csv_body(cfg: DataConfig) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's names and the non-blank rows (CSV line, fields) of `cfg.csv`."""
    path = Path(cfg.csv)
    if not cfg.csv:
        raise CSVError("task 'csv' needs data.csv: the path of a CSV file")
    if not path.is_file():
        raise CSVError(f"CSV not found: {path}")
    rows = _rows(path)
    if not rows:
        raise CSVError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    return header, [(i + 2, r) for i, r in enumerate(rows[1:]) if any(v.strip() for v in r)]  # blank lines skipped


def column_roles(cfg: DataConfig, header: list[str], body: list, path) -> tuple[str, list[str]]:
    """The time column (data.time_column, else the one column of ISO dates, else "") and the model's columns.

    Time and series columns, and any column of dates, are never inputs unless data.features names them."""
    dates = [h for k, h in enumerate(header)
             if is_date_column(row[k] for _, row in body[:1000] if k < len(row))]
    time_column = cfg.time_column or (dates[0] if len(dates) == 1 else "")
    skip = {time_column, cfg.series_column, *dates} - {""}
    return time_column, model_columns(cfg, header, path, skip)


def read_csv(cfg: DataConfig) -> tuple[np.ndarray, list[str]]:
    """The numeric columns of `cfg.csv` as [rows, columns] float64 with their names, missing values handled."""
    table = read_table(cfg)
    return _fill_missing(table.values, table.names, cfg.missing, Path(cfg.csv), table.lines), table.names


def model_columns(cfg: DataConfig, header: list[str], path, skip=frozenset()) -> list[str]:
    """The columns the model reads: inputs (data.features, else all but drop_columns and `skip`), then targets
    not among them; CSVError naming a configured column the header lacks."""
    for name in cfg.drop_columns:
        if name not in header:
            raise CSVError(f"{path}: drop_columns names {name!r}, which is not a column; columns: {', '.join(header)}")
    wanted = list(dict.fromkeys(cfg.features or [h for h in header if h not in cfg.drop_columns and h not in skip]))
    if not wanted:
        raise CSVError(f"{path}: no input column is left after dropping {', '.join(cfg.drop_columns)} "
                       "(data.drop_columns, check-data --drop)")
    for name in wanted + list(cfg.targets) + [c for c in (cfg.time_column, cfg.series_column) if c]:
        if name not in header:
            raise CSVError(f"{path}: no column {name!r}; columns: {', '.join(header)}")
    return wanted + [t for t in cfg.targets if t not in wanted]


def interpolate_missing(values: np.ndarray) -> np.ndarray:
    """NaNs filled linearly in time, per column, in place; ends held at the nearest value; all-NaN columns kept."""
    t = np.arange(len(values))
    for c in range(values.shape[1]):
        ok = ~np.isnan(values[:, c])
        if ok.any() and not ok.all():
            values[:, c] = np.interp(t, t[ok], values[ok, c])
    return values


def _number(text: str, path: Path, line: int, column: str) -> float:
    text = text.strip()
    if text == "" or text.lower() in ("na", "nan", "null", "none"):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise CSVError(f"{path} line {line}, column {column!r}: {text!r} is not a number "
                       f"(drop the column with data.drop_columns, or choose data.features)") from None
    if math.isinf(value):
        raise CSVError(f"{path} line {line}, column {column!r}: infinite value")
    if abs(value) > FLOAT32_MAX:  # the model computes in float32: this would be inf there
        raise CSVError(f"{path} line {line}, column {column!r}: {text} is beyond float32 (|value| <= 3.4e38)")
    return value


def _fill_missing(values: np.ndarray, names: list[str], how: str, path: Path, lines: list[int]) -> np.ndarray:
    missing = np.isnan(values)
    if not missing.any():
        return values
    if how == "error":
        r, c = np.argwhere(missing)[0]
        raise CSVError(f"{path}: {int(missing.sum())} missing value(s), first at line {lines[r]}, column "
                       f"{names[c]!r}; set data.missing = \"interpolate\" or \"drop\"")
    if how == "drop":
        return values[~missing.any(1)]
    empty = np.flatnonzero(missing.all(0))
    if len(empty):
        raise CSVError(f"{path}: column {names[empty[0]]!r} has no values")
    return interpolate_missing(values)


def csv_dataset(cfg: DataConfig, table: CSVTable | None = None) -> Dataset:
    """The CSV task's dataset: per series (data.series_column) missing values handled, differenced, split by
    time and windowed, so that no window and no split crosses from one series into another."""
    table = table or read_table(cfg)
    names, path, parts = table.names, Path(cfg.csv or "data"), []
    for label, rows in table.groups():
        where = f"{path} series {label!r}" if table.series is not None else str(path)
        values = _fill_missing(table.values[rows], names, cfg.missing, path, [table.lines[r] for r in rows])
        if cfg.difference:
            values = np.diff(values, axis=0)
            if (np.abs(values) > FLOAT32_MAX).any():
                r, c = np.argwhere(np.abs(values) > FLOAT32_MAX)[0]
                raise CSVError(f"{where}: the difference of data rows {r + 1} and {r + 2} in column {names[c]!r} "
                               f"is beyond float32 (|value| <= 3.4e38)")
        parts.append((label, values.astype(np.float32), where))
    inputs = list(dict.fromkeys(cfg.features)) if cfg.features else names
    targets = list(cfg.targets) or inputs
    data = build_series_dataset(parts, names, targets, cfg, inputs, per_series=cfg.normalize == "series")
    if table.series is None:
        data.series_names = []
        data.train.series = data.val.series = data.test.series = None
    data.columns = {"time": table.time_column, "series": cfg.series_column, "features": data.feature_names,
                    "targets": data.target_names}
    return data


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset of `cfg.task`: synthetic and csv are series split by time; the rest are generated sequences."""
    if cfg.task == "synthetic":
        series = synthetic_series(cfg)
        names = [f"f{k}" for k in range(series.shape[1])]
        return build_dataset(series, names, names, cfg)
    if cfg.task == "csv":
        return csv_dataset(cfg)
    return generated_dataset(cfg)


def build_dataset(series: np.ndarray, feature_names: list[str], target_names: list[str],
                  cfg: DataConfig, input_names: list[str] | None = None) -> Dataset:
    """Split `series` [T, C] by time, fit normalization on train, window each split.

    Columns are named by `feature_names`; the model reads `input_names` (default: all of them) and
    predicts `target_names`.
    """
    data = build_series_dataset([("", series, "")], feature_names, target_names, cfg, input_names)
    data.series_names = []
    data.train.series = data.val.series = data.test.series = None
    return data


def build_series_dataset(parts: list[tuple[str, np.ndarray, str]], feature_names: list[str],
                         target_names: list[str], cfg: DataConfig, input_names: list[str] | None = None,
                         per_series: bool = False) -> Dataset:
    """`parts`: (series id, its rows [T, C] in time order, how errors name it). Each series is split by time
    on its own; normalization is fitted on the train segments (of all series together, or with `per_series`
    of each series alone); windows never cross a series. Split.series gives each window's series."""
    input_names = input_names or feature_names
    input_cols = [feature_names.index(n) for n in input_names]
    target_cols = [feature_names.index(n) for n in target_names]
    segments = []
    for label, series, where in parts:
        try:
            segments.append(split_by_time(series, cfg))
        except ValueError as exc:  # too few rows for the window
            raise CSVError(f"{where}: {len(series)} usable rows: {exc}" if where else str(exc)) from None

    def narrow(full: Normalization) -> Normalization:
        return Normalization(full.input_mean[input_cols], full.input_std[input_cols],
                             full.target_mean, full.target_std)

    norm = narrow(Normalization.fit(np.concatenate([s[0] for s in segments]), target_cols))
    by_series = ({label: narrow(Normalization.fit(seg[0], target_cols)) for (label, _, _), seg in
                  zip(parts, segments)} if per_series else None)

    def make(k: int) -> Split:
        xs, ys, ids = [], [], []
        for i, ((label, _, _), seg) in enumerate(zip(parts, segments)):
            n = by_series[label] if by_series else norm
            x, y = windows(seg[k], target_cols, cfg.window, cfg.horizon, cfg.stride)
            xs.append((x[:, :, input_cols] - n.input_mean) / n.input_std)
            ys.append((y - n.target_mean) / n.target_std)
            ids.append(np.full(len(x), i))
        return Split(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32),
                     np.concatenate(ids))

    return Dataset(make(0), make(1), make(2), norm, list(input_names), list(target_names),
                   [label for label, _, _ in parts], by_series)
