"""Rows of a table as time series: timestamps, series of a long-format table, windows.

Training (pipeline/data.py), check-data (pipeline/quality.py) and forecasting from a table
(runtimes/forecast.py) read a table's rows the same way through these functions: numpy only.
"""
from __future__ import annotations

import numpy as np


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_times(texts) -> np.ndarray | None:
    """Timestamps as float64: numbers as they are, ISO dates/times as seconds since 1970; None if neither."""
    try:
        return np.array([float(t) for t in texts])
    except (TypeError, ValueError):
        pass
    try:
        return np.array([str(t).strip() for t in texts], dtype="datetime64[s]").astype(np.int64).astype(np.float64)
    except ValueError:
        return None


def is_date_column(texts) -> bool:
    """Every non-empty value is an ISO date or time (and not a number): a timestamp column, not a feature."""
    present = [t for t in texts if str(t).strip()]
    return bool(present) and not is_number(str(present[0])) and parse_times(present) is not None


def format_time(seconds: float, iso: bool) -> str:
    """A timestamp as parse_times read it, back as text: ISO for dates, else the number."""
    if iso:
        stamp = np.datetime64(int(round(seconds)), "s")
        return str(stamp.astype("datetime64[D]")) if round(seconds) % 86400 == 0 else str(stamp)
    return f"{seconds:.15g}"


def groups(labels, rows: int) -> list[tuple[str, np.ndarray]]:
    """(series label, its row indices in file order) per series, in order of first appearance;
    labels None: all `rows` rows are one series, named ""."""
    if labels is None:
        return [("", np.arange(rows))]
    labels = np.asarray(labels, dtype=str)
    names, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rows_of = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])  # one pass
    return [(str(names[k]), rows_of[k]) for k in np.argsort(first)]


def windows(series: np.ndarray, target_cols: list[int], window: int, horizon: int, stride: int):
    """Inputs [N, window, F] and targets [N, T]: the target columns `horizon` steps after each window."""
    starts = np.arange(0, len(series) - window - horizon + 1, stride)
    if len(starts) == 0:
        raise ValueError(f"series of {len(series)} steps is too short for window {window} + horizon {horizon}")
    idx = starts[:, None] + np.arange(window)[None, :]
    x = series[idx]
    y = series[starts + window + horizon - 1][:, target_cols]
    return x.astype(np.float32), y.astype(np.float32)
