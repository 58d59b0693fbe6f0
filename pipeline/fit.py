"""`lstm_onnx.fit`: train on a CSV file or a table in memory (a pandas DataFrame, a mapping of columns, or a
2-D numpy array), the way `train --csv` does: the same config resolution, data checks, seeding and loop."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from lstm_onnx.pipeline.checkpoint import Checkpoint
from lstm_onnx.pipeline.config import RunConfig, run_config_from_dict
from lstm_onnx.pipeline.csv_run import checked_dataset, config_path, csv_config, write_config


def table_rows(data, columns: list[str] | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the rows (line, fields as text) of `data`, as pipeline.data reads a CSV: a DataFrame
    (pandas is not imported here), a mapping of column name -> values, or a 2-D array with `columns` (default
    c0, c1, ...). Line k + 2 is row k (the header is line 1), so errors count like a CSV's lines."""
    if hasattr(data, "columns") and hasattr(data, "to_dict"):  # a pandas DataFrame
        data = {str(c): data[c].tolist() for c in data.columns}
    if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and not isinstance(data, dict)):
        array = np.asarray(data)
        if array.ndim != 2:
            raise ValueError(f"data: a 2-D array [steps, columns] expected, got shape {list(array.shape)}")
        names = list(columns or [f"c{k}" for k in range(array.shape[1])])
        if len(names) != array.shape[1]:
            raise ValueError(f"columns: {len(names)} names for {array.shape[1]} columns")
        data = {n: array[:, k].tolist() for k, n in enumerate(names)}
    if not hasattr(data, "items"):
        raise TypeError(f"data: a CSV path, a pandas DataFrame, a mapping of columns or a 2-D numpy array, got "
                        f"{type(data).__name__}")
    header = [str(n) for n in data]
    values = [list(v) for v in data.values()]
    if len({len(v) for v in values}) > 1:
        lengths = ", ".join(f"{n} {len(v)}" for n, v in zip(header, values))
        raise ValueError(f"data: columns of different lengths ({lengths})")
    rows = [[_text(v[r]) for v in values] for r in range(len(values[0]) if values else 0)]
    return header, [(r + 2, row) for r, row in enumerate(rows)]


def _text(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # reads back as the same number
    return "" if value is None else str(value)


def fit(data, target: str | list[str], *, features: list[str] | None = None, time_column: str = "",
        series_column: str = "", window: int | None = None, horizon: int | None = None,
        normalize: str | None = None, columns: list[str] | None = None, config: dict | RunConfig | None = None,
        out: str | Path | None = None, log=None, progress: bool = False) -> Checkpoint:
    """Train on `data` (a CSV file, or a table as table_rows takes it) and return the checkpoint (also written
    to `out`, with its config as OUT.toml, if given).

    `target`: the column(s) to predict. `features`: the inputs (default: every numeric column but the time and
    series columns). `config`: the rest of the run ({"model": {...}, "train": {...}} or a RunConfig); its
    [data] is set from these arguments; sizes come from the data unless the dict states them. Errors are
    ValueErrors with `train`'s one-line messages."""
    from lstm_onnx.pipeline.train import train

    csv, header, body = "", None, None
    if isinstance(data, (str, os.PathLike)):
        csv = data
    else:
        header, body = table_rows(data, columns)
    toml = None
    if out is not None:
        import tomli_w  # noqa: F401 - the [train] extra's; missing, it must stop fit before training, not after

        toml = config_path(out)
    base = copy.deepcopy(config) if isinstance(config, RunConfig) else run_config_from_dict(dict(config or {}))
    run = csv_config(csv, [target] if isinstance(target, str) else list(target), features=features,
                     time_column=time_column, series_column=series_column, window=window, horizon=horizon,
                     normalize=normalize, base=base, header=header, body=body)
    # sizes a config dict states are kept: one that disagrees with the data gets train's one-line error
    stated = (config or {}).get("model", {}) if isinstance(config, dict) else {}
    for key in ("input_size", "output_size"):
        if key in stated:
            setattr(run.model, key, stated[key])
    quiet = log is None
    dataset = checked_dataset(run, warn=(lambda _: None) if quiet else log, header=header, body=body)
    ckpt = train(run, out, progress=progress, dataset=dataset, log=(lambda *_: None) if quiet else log)
    if toml is not None:
        write_config(run, toml)
    return ckpt
