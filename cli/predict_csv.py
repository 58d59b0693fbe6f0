"""`predict`'s CSV: a sequence in, predictions out, both with a header row.

In: one sequence, one row per step, one column per feature. The first row may be a header; its names must be
the model's feature names (metadata `feature_names`), in order.

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


class CSVInputError(ValueError):
    """The CSV cannot feed the model; the message starts with the file and, where it can, the line and column."""


def read_sequence(path: Path, feature_names: list[str] | None) -> np.ndarray:
    """The CSV at `path` as float32 [steps, features]."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(n, row) for n, row in _rows(csv.reader(fh)) if any(f.strip() for f in row)]
    except UnicodeDecodeError:
        raise CSVInputError(f"{path}: not UTF-8 text (expected numbers, comma-separated)") from None
    except csv.Error as exc:
        raise CSVInputError(f"{path}: {exc} (expected numbers, comma-separated)") from None
    header = _header(path, rows, feature_names)
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise CSVInputError(f"{path}: no rows of numbers (one row per step, one column per feature)")
    names = header or [f"column {k + 1}" for k in range(len(rows[0][1]))]
    return np.stack([_numbers(path, line, row, names) for line, row in rows])


def _rows(reader):
    for row in reader:
        yield reader.line_num, row


def _header(path: Path, rows: list, feature_names: list[str] | None) -> list[str] | None:
    """The header's names, or None when the first row is numbers."""
    if not rows:
        return None
    names = [f.strip() for f in rows[0][1]]
    if any(_is_number(f) for f in names):
        return None  # numbers (a typo among them is reported by line and column)
    if not (isinstance(feature_names, list) and feature_names):
        raise CSVInputError(f"{path}: a header row ({', '.join(names)}), but the model's metadata names no "
                            f"features to check it against; drop the header row")
    if names != [str(n) for n in feature_names]:
        raise CSVInputError(f"{path}: the header's names differ from the model's features; expected "
                            f"{','.join(map(str, feature_names))}, got {','.join(names)}")
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
