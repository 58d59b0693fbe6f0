"""Forecasts from a table laid out like the training data: numpy only (the deploy side).

A model trained on a table (`train --csv`, `fit`) records its column roles in metadata `columns`: the time and
series columns, features, targets, and the window, horizon and differencing that made its windows. Given raw
history in that layout (extra columns ignored), each series' rows become windows the way training made them,
and each forecast is labelled with its series and the time it is for.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lstm_onnx.core.series import format_time, groups, is_date_column, parse_times


class TableError(ValueError):
    """The table cannot feed the model; the message names the column, row or series."""


def roles(meta: dict) -> dict:
    """The model's column roles (metadata `columns`), or TableError for a model not trained on a table."""
    cols = meta.get("columns")
    if not isinstance(cols, dict) or not isinstance(cols.get("window"), int):
        raise TableError("this model was not trained on a table (no `columns` in its metadata): pass windows "
                         "[batch, seq, features] instead")
    return cols


def forecast(predictor, table: Mapping[str, Sequence], rolling: bool = False,
             rows: Sequence[str] | None = None) -> dict[str, list]:
    """Columns of forecasts (name -> values): the series column, the time column (the time each forecast is
    for; `step`, the row within its series, without one), then one column per target (`<target>_change` for
    a model of differences). One forecast per series from its last window, or with `rolling` one from every
    window. `rows`: how errors name each row (default "row k", counting from 0)."""
    cols = roles(predictor.meta)
    features, targets = cols["features"], cols["targets"]
    window, horizon, difference = cols["window"], cols["horizon"], bool(cols.get("difference"))
    lacking = [f for f in features if f not in table]
    if lacking:
        raise TableError(f"no column(s) {', '.join(map(repr, lacking))}: the model reads {', '.join(features)}; "
                         f"the table has {', '.join(map(str, table))}")
    n = len(table[features[0]])
    rows = rows or [f"row {k}" for k in range(n)]
    values = np.column_stack([_numbers(table[f], f, rows) for f in features])
    series_col = cols.get("series") if cols.get("series") in table else ""
    time_col = cols.get("time") if cols.get("time") in table else ""
    labels = [str(v).strip() for v in table[series_col]] if series_col else None
    times = _times(table[time_col], time_col) if time_col else None
    iso = bool(time_col) and is_date_column(str(v) for v in table[time_col])
    xs, where, when = [], [], []
    lag = 1 if difference else 0
    for label, idx in groups(labels, n):
        v = np.diff(values[idx], axis=0) if difference else values[idx]
        if len(v) < window:
            name = f"series {label!r}" if labels is not None else "the table"
            raise TableError(f"{name} has {len(idx)} row(s); the model reads windows of {window}"
                             f"{' differences (one row more)' if difference else ''}")
        for end in range(window - 1, len(v)) if rolling else [len(v) - 1]:
            xs.append(v[end - window + 1:end + 1])
            where.append(label)
            when.append(_time_for(times, idx, end + lag, horizon, iso))
    x = np.stack(xs).astype(np.float32)
    y = predictor.predict(x, series=where if predictor.series_normalization else None)
    out: dict[str, list] = {}
    if labels is not None:
        out[series_col] = where
    out[time_col or "step"] = when
    for k, name in enumerate(targets):
        out[f"{name}_change" if difference else name] = [float(v) for v in y[:, k]]
    return out


def _numbers(column: Sequence, name: str, rows: Sequence[str]) -> np.ndarray:
    out = np.empty(len(column))
    for k, value in enumerate(column):
        try:
            out[k] = float(value)
        except (TypeError, ValueError):
            raise TableError(f"{rows[k]}, column {name!r}: {str(value).strip()!r} is not a number") from None
        if not math.isfinite(out[k]):
            raise TableError(f"{rows[k]}, column {name!r}: a missing or infinite value; fill it first")
    return out


def _times(column: Sequence, name: str) -> np.ndarray:
    times = parse_times(column)
    if times is None:
        raise TableError(f"time column {name!r}: not numbers or ISO dates throughout")
    return times


def _time_for(times: np.ndarray | None, idx: np.ndarray, last: int, horizon: int, iso: bool):
    """The time (or, with no time column, the step within the series) `horizon` steps after row `last` of a
    series: read from the table where it has that row, else extrapolated by the series' median step."""
    target = last + horizon
    if times is None:
        return target
    t = times[idx]
    if target < len(t):
        value = t[target]
    else:
        step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        value = t[-1] + (target - len(t) + 1) * step
    return format_time(value, iso)
