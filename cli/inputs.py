"""Reading a command's raw input file: a CSV of one sequence or a .npy array, refused in one line."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np


def read_csv_table(path: Path, columns: list[str] | None = None, drop: list[str] | None = None):
    """A CSV with a header row (or `columns`) as (header, [(line, fields)]); None for a CSV of bare numbers."""
    from lstm_onnx.cli.predict_csv import CSVInputError, read_table

    if not path.is_file():
        raise click.ClickException(f"input not found: {path}")
    try:
        header, rows = read_table(path, columns, drop)
    except CSVInputError as exc:
        raise click.ClickException(f"cannot read {exc}") from None
    return None if header is None else (header, rows)


def read_array(path: Path, feature_names: list[str] | None = None, columns: list[str] | None = None,
               drop: list[str] | None = None) -> np.ndarray:
    """The array in `path` (.npy as stored; a CSV as [seq, features]); ClickException naming the file."""
    from lstm_onnx.cli.predict_csv import CSVInputError, read_sequence

    if not path.is_file():
        raise click.ClickException(f"input not found: {path}")
    try:
        if path.suffix == ".npy":
            return _read_npy(path)
        return read_sequence(path, feature_names, columns, drop)
    except CSVInputError as exc:
        raise click.ClickException(f"cannot read {exc}") from None
    except ValueError as exc:
        raise click.ClickException(f"cannot read {path}: {str(exc).splitlines()[0]} "
                                   "(expected numbers, comma-separated)") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # a damaged header raises ValueError, EOFError, tokenize's TokenError, ...
        raise click.ClickException(f"cannot read {path}: {(str(exc).splitlines() or [type(exc).__name__])[0]} "
                                   "(expected a .npy array [batch, seq, features])") from None
