"""`predict`'s CSV: a sequence (or a table like the training data) in, predictions out, with header rows.

In: one sequence, one row per step, one column per feature. The first row may be a header; it must name the
model's features (metadata `feature_names`); other columns are ignored. `--drop` leaves columns out and
`--columns` names the columns of a file without a header row. A model trained on a table gets the table
itself: see `read_table` and runtimes/forecast.py.

Out (what `pandas.read_csv` or `csv.DictReader` reads back): a header, then
- `last` / `classify` heads: `sequence,<target names>`, one row per sequence of the batch;
- `sequence` heads: `sequence,step,<target names>`, one row per step, sequence by sequence.
`sequence` and `step` count from 0. Values are float32 written in full (they read back exactly).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from lstm_onnx.core.series import is_number


class CSVInputError(ValueError):
    """The CSV cannot feed the model; the message starts with the file and, where it can, the line and column."""


def read_table(path: Path, columns: list[str] | None = None,
               drop: list[str] | None = None) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The CSV's header (None when its first row is numbers and no `columns` are given) and its non-blank rows
    (line, fields), with the `drop` columns left out."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(n, row) for n, row in _rows(csv.reader(fh)) if any(f.strip() for f in row)]
    except UnicodeDecodeError:
        raise CSVInputError(f"{path}: not UTF-8 text (expected numbers, comma-separated)") from None
    except csv.Error as exc:
        raise CSVInputError(f"{path}: {exc} (expected numbers, comma-separated)") from None
    header = None
    if columns:
        header = list(columns)
    elif rows and not any(is_number(f.strip()) for f in rows[0][1]):
        header, rows = [f.strip() for f in rows[0][1]], rows[1:]
    if header is not None:
        ragged = next(((line, row) for line, row in rows if len(row) != len(header)), None)
        if ragged is not None:
            raise CSVInputError(f"{path} line {ragged[0]}: {len(ragged[1])} fields, expected {len(header)} "
                                f"({', '.join(header)})")
    if drop:
        if header is None:
            raise CSVInputError(f"{path}: --drop needs column names: the file has no header row (name its "
                                f"columns with --columns)")
        for name in drop:
            if name not in header:
                raise CSVInputError(f"{path}: --drop names {name!r}, which is not a column; columns: "
                                    f"{', '.join(header)}")
        keep = [k for k, h in enumerate(header) if h not in drop]
        header, rows = [header[k] for k in keep], [(line, [row[k] for k in keep]) for line, row in rows]
    return header, rows


def read_sequence(path: Path, feature_names: list[str] | None, columns: list[str] | None = None,
                  drop: list[str] | None = None) -> np.ndarray:
    """The CSV at `path` as float32 [steps, features]: the model's features picked by name from a header."""
    header, rows = read_table(path, columns, drop)
    if header is not None:
        picked = _pick(path, header, feature_names)
        rows = [(line, [row[k] for k in picked]) for line, row in rows]
        header = [header[k] for k in picked]
    if not rows:
        raise CSVInputError(f"{path}: no rows of numbers (one row per step, one column per feature)")
    names = header or [f"column {k + 1}" for k in range(len(rows[0][1]))]
    return np.stack([_numbers(path, line, row, names) for line, row in rows])


def _pick(path: Path, names: list[str], feature_names: list[str] | None) -> list[int]:
    """The header's columns of the model's features, in the model's order."""
    if not (isinstance(feature_names, list) and feature_names):
        raise CSVInputError(f"{path}: a header row ({', '.join(names)}), but the model's metadata names no "
                            f"features to check it against; drop the header row")
    if not set(map(str, feature_names)) <= set(names):
        raise CSVInputError(f"{path}: the header's names differ from the model's features; expected "
                            f"{','.join(map(str, feature_names))}, got {','.join(names)}")
    return [names.index(str(n)) for n in feature_names]


def table_text(columns: dict[str, list]) -> str:
    """Columns of equal length (runtimes.forecast.forecast's result) as CSV with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    for row in zip(*columns.values()):
        writer.writerow([_float32_text(v) if isinstance(v, float) else v for v in row])
    return out.getvalue()


def _rows(reader):
    for row in reader:
        yield reader.line_num, row


def _numbers(path: Path, line: int, row: list[str], names: list[str]) -> np.ndarray:
    if len(row) != len(names):
        raise CSVInputError(f"{path} line {line}: {len(row)} fields, expected {len(names)} ({', '.join(names)})")
    values = np.empty(len(row), np.float64)
    for k, text in enumerate(row):
        try:
            values[k] = float(text)
        except ValueError:
            raise CSVInputError(f"{path} line {line}, {_column(names[k])}: {text.strip()!r} is not a "
                                f"number") from None
    with np.errstate(over="ignore"):
        narrowed = values.astype(np.float32)
    # A finite number beyond float32's range would silently become inf.
    beyond = np.isfinite(values) & ~np.isfinite(narrowed)
    if beyond.any():
        k = int(np.argmax(beyond))
        raise CSVInputError(f"{path} line {line}, {_column(names[k])}: {row[k].strip()} is beyond float32 "
                            f"(|x| <= {np.finfo(np.float32).max:.7g})")
    return narrowed


def _column(name: str) -> str:
    return name if name.startswith("column ") else f"column {name!r}"


def prediction_text(y: np.ndarray, target_names: list[str] | None) -> str:
    """y [batch, targets] or [batch, steps, targets] as CSV with a header (see the module docstring)."""
    names = list(target_names or [])
    if len(names) != y.shape[-1]:
        names = [f"y{k}" for k in range(y.shape[-1])]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if y.ndim == 3:
        writer.writerow(["sequence", "step", *names])
        for b, seq in enumerate(y):
            for t, row in enumerate(seq):
                writer.writerow([b, t, *map(_float32_text, row)])
    else:
        writer.writerow(["sequence", *names])
        for b, row in enumerate(y):
            writer.writerow([b, *map(_float32_text, row)])
    return out.getvalue()


def _float32_text(v) -> str:
    return str(np.float32(v))  # the shortest text that reads back as the same float32
