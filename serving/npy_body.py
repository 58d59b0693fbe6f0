"""Request bodies in NumPy's .npy format (Content-Type: application/x-npy) -> checked float32 arrays.

JSON costs the server a Python float per value; a .npy body is read in place. It carries its own shape and
dtype, every language can write it (numpy.save, or a 128-byte header before the raw values), and pickled
object arrays are refused rather than loaded.
"""
from __future__ import annotations

import io
import re

import numpy as np
from numpy.lib import format as npy

from lstm_onnx.serving.inputs import ApiError, finite_float32

MEDIA_TYPE = "application/x-npy"
_HEADERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
# numpy.save's own spelling of the header. numpy's reader parses any spelling through ast.literal_eval, which
# cost as much as parsing the same values as JSON; other spellings still go to it.
_SAVED = re.compile(r"\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \((\d+,|\d+(?:, \d+)+|)\), \} *\n")
_MAX_HEADER = 10_000  # numpy's own max_header_size


def read_header(raw: bytes) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, offset of the values) of a .npy file in memory; ValueError if it is not."""
    version = (raw[6], raw[7]) if raw[:6] == npy.MAGIC_PREFIX and len(raw) >= 8 else None
    if version not in _HEADERS:
        raise ValueError("no .npy magic bytes" if version is None else
                         f"format version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    start = 10 if version == (1, 0) else 12
    offset = start + int.from_bytes(raw[8:start], "little")
    if offset - start > _MAX_HEADER:
        raise ValueError(f"the header is {offset - start} bytes, more than numpy's limit {_MAX_HEADER}")
    try:  # numpy's reader lets TypeError, tokenize errors and RecursionError through for odd headers
        saved = _SAVED.fullmatch(raw[start:offset].decode("latin-1"))
        if saved is None:
            fp = io.BytesIO(raw)
            npy.read_magic(fp)
            shape, fortran_order, dtype = _HEADERS[version](fp)
        else:
            shape = tuple(int(d) for d in saved[3].split(",") if d)  # the regex admits only tuple reprs
            fortran_order, dtype = saved[2] == "True", np.dtype(saved[1])
    except Exception as exc:  # noqa: BLE001 - every way a header can be broken is the client's error
        raise ValueError(f"unreadable header ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"the header's shape {_excerpt(shape)} is not sizes")
    return shape, fortran_order, dtype, offset


def _excerpt(shape: tuple, limit: int = 6) -> str:
    return str(list(shape)) if len(shape) <= limit else str(list(shape[:limit]))[:-1] + ", ...]"


def npy_array(raw: bytes, dims: tuple[str, ...], num_features: int, max_items: int, max_steps: int) -> np.ndarray:
    """dims: ("sequences", "steps", "features") for predict, ("steps", "features") for a session step."""
    expected = f"a .npy array (numpy.save) of numbers shaped [{', '.join(dims[:-1])}, {num_features}]"
    try:
        shape, fortran_order, dtype, offset = read_header(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_npy", f"body is not a .npy array: {exc}", expected) from None
    if dtype.hasobject or dtype.kind not in "iuf":
        raise ApiError(422, "bad_dtype", f"the array's dtype is {dtype}, not numbers", expected)
    if len(shape) != len(dims) or shape[-1] != num_features:
        raise ApiError(422, "bad_shape", f"the array's shape is {_excerpt(shape)}", expected)
    if 0 in shape:
        raise ApiError(422, "empty_sequence", f"the array's shape {_excerpt(shape)} holds no steps", expected)
    if len(dims) == 3 and shape[0] > max_items:
        raise ApiError(413, "too_many_sequences", f"the array holds {shape[0]} sequences, more than the limit "
                       f"{max_items}", expected)
    if shape[-2] > max_steps:
        raise ApiError(422, "sequence_too_long", f"{shape[-2]} steps, more than the limit {max_steps}", expected)
    count = int(np.prod(shape))
    if len(raw) - offset != count * dtype.itemsize:
        raise ApiError(400, "bad_npy", f"the body holds {len(raw) - offset} bytes of values, the header says "
                       f"{count * dtype.itemsize}", expected)
    values = np.frombuffer(raw, dtype, count, offset).reshape(shape, order="F" if fortran_order else "C")
    return np.ascontiguousarray(finite_float32(values, "the array"))
