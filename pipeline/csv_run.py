"""A run on a user's table with no config file: the config resolved from the data, checked, and written back.

`train --csv` and the Python `fit` both come here: the sizes come from the data (inputs and targets), the
time column is the one named or the one column of ISO dates, and the resolved config is written as TOML
next to the checkpoint, so that `train --config` repeats the run.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.pipeline.config import RunConfig
from lstm_onnx.pipeline.data import CSVError, column_roles, csv_body, csv_dataset, read_table
from lstm_onnx.pipeline.dataset import Dataset


def csv_config(csv: str | os.PathLike, targets: list[str], *, features: list[str] | None = None,
               time_column: str = "", series_column: str = "", drop_columns: list[str] | None = None,
               window: int | None = None, horizon: int | None = None, normalize: str | None = None,
               base: RunConfig | None = None, header: list[str] | None = None, body: list | None = None) -> RunConfig:
    """`base` (default: the defaults) with its [data] set to this CSV and model.input_size/output_size taken
    from the data. `header`/`body`: the table already in memory ([(line, fields)]), for data with no file.
    ValueError (CSVError) for a bad option or a column the table lacks."""
    config = base or RunConfig()
    data = config.data
    data.task, data.csv = "csv", str(csv) if csv else ""
    if not targets:
        raise CSVError("name the column(s) to predict: --target COL (fit: target=...)")
    data.targets, data.features = list(targets), list(features or [])
    data.time_column, data.series_column, data.drop_columns = time_column, series_column, list(drop_columns or [])
    for key, value in (("window", window), ("horizon", horizon), ("normalize", normalize)):
        if value is not None:
            setattr(data, key, value)
    config.validate()
    if header is None:
        header, body = csv_body(data)
    data.time_column, names = column_roles(data, header, body, data.csv or "data")
    data.features = data.features or names
    config.model.input_size, config.model.output_size = len(data.features), len(data.targets)
    config.validate()
    return config


def config_path(out: str | Path) -> Path:
    """Where a run built from a table writes its config: OUT with .toml, which must not be OUT itself."""
    out = Path(out)
    if out.suffix == ".toml":
        raise CSVError(f"-o {out}: the checkpoint needs another suffix than .toml (its config goes to OUT with .toml)")
    return out.with_suffix(".toml")


def write_config(config: RunConfig, path: str | Path) -> Path:
    """The run config as TOML at `path` (atomically); data.csv relative to the file's folder, as
    pipeline.config.load_run_config reads it back."""
    import tomli_w

    path = Path(path)
    values = dataclasses.asdict(config)
    if values["data"]["csv"]:
        values["data"]["csv"] = os.path.relpath(Path(values["data"]["csv"]).resolve(), path.parent.resolve())
    with atomic_path(path) as tmp:
        tmp.write_text(tomli_w.dumps(values))
    return path


def checked_dataset(config: RunConfig, warn=print, header: list[str] | None = None,
                    body: list | None = None) -> Dataset | None:
    """The CSV task's dataset after check-data's findings (pipeline/quality.py): errors refused (CSVError,
    one line), warnings passed to `warn`. None for a generated task (training generates it)."""
    from lstm_onnx.pipeline.quality import check_csv

    data = config.data
    if data.task != "csv":
        return None
    if header is None:  # read once, for the loader and the checks alike
        header, body = csv_body(data)
    # the loader's own refusals first (missing values, text, overflow, too few rows), in its words
    dataset = csv_dataset(data, read_table(data, header, body))
    report = check_csv(data, header, body)
    if report.errors:
        f = report.errors[0]
        more = f" (and {len(report.errors) - 1} more: lstm-pipeline check-data)" if len(report.errors) > 1 else ""
        where = f"series {f.series!r}, " if f.series else ""
        raise CSVError(f"data {where}{f.column}: {f.message}{more}")
    for f in report.warnings:
        warn(f"warning: data {f'series {f.series!r}, ' if f.series else ''}{f.column}: {f.message}")
    return dataset
