""".npy request bodies: read in place when well-formed, and every malformed one refused with a reason."""
from __future__ import annotations

import io

import numpy as np
import pytest

from lstm_onnx.serving import npy_body
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.npy_body import npy_array, read_header

DIMS = ("sequences", "steps", "features")


def npy(arr, version=None) -> bytes:
    fp = io.BytesIO()
    if version is None:
        np.save(fp, arr, allow_pickle=True)
    else:
        np.lib.format.write_array(fp, arr, version=version, allow_pickle=True)
    return fp.getvalue()


@pytest.mark.parametrize("arr", [
    np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 7, np.arange(24, dtype=np.float64).reshape(2, 4, 3) - 5,
    np.arange(24, dtype=np.int16).reshape(2, 4, 3), np.asfortranarray(np.arange(24.0).reshape(2, 4, 3))])
def test_well_formed_arrays_read_as_float32(arr):
    out = npy_array(npy(arr), DIMS, 3, 8, 10)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_format_version_2_reads():
    arr = np.ones((1, 2, 3), np.float32)
    np.testing.assert_array_equal(npy_array(npy(arr, (2, 0)), DIMS, 3, 8, 10), arr)


def hand_written(header: str, values: bytes) -> bytes:
    """A .npy file as another writer might spell its header (numpy's reader takes any Python literal)."""
    text = header + " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + values


def test_headers_spelled_differently_read_through_numpy():
    values = np.arange(6, dtype="<f4")
    raw = hand_written('{"shape": (1, 2, 3), "fortran_order": False, "descr": "<f4"}', values.tobytes())
    np.testing.assert_array_equal(npy_array(raw, DIMS, 3, 8, 10), values.reshape(1, 2, 3))


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", "<f2", "<i8", ">i2", "<u8", "|u1", "<c8", "|b1", "<M8[s]", "|O"])
@pytest.mark.parametrize("shape", [(), (5,), (1, 0, 3), (2, 4, 3), (3, 1)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_numpy_save_headers_take_the_fast_path_and_agree_with_numpy(monkeypatch, dtype, shape, order):
    arr = np.zeros(shape, dtype, order=order)
    raw = npy(arr)
    fp = io.BytesIO(raw)
    np.lib.format.read_magic(fp)
    want = (*np.lib.format.read_array_header_1_0(fp), fp.tell())
    monkeypatch.setattr(npy_body, "_HEADERS", {(1, 0): None, (2, 0): None})  # the slow reader must not run
    assert read_header(raw) == want


def test_limits_are_inclusive():
    assert npy_array(npy(np.ones((8, 10, 3), np.float32)), DIMS, 3, 8, 10).shape == (8, 10, 3)


def test_nan_is_named():
    with pytest.raises(ApiError, match="NaN"):
        npy_array(npy(np.array([[[1, np.nan, 3]]], np.float32)), DIMS, 3, 8, 10)


V24 = np.arange(6, dtype="<f4").tobytes()

BAD = {
    "a dtype numpy does not know": (hand_written("{'descr': 'xyz', 'fortran_order': False, 'shape': (1, 2, 3), }",
                                                 V24), 400, "bad_npy"),
    "negative sizes": (hand_written("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, -2, 3)}", V24),
                       400, "bad_npy"),
    "booleans for sizes": (hand_written("{'descr': '<f4', 'fortran_order': False, 'shape': (True, 2, 3)}", V24),
                           400, "bad_npy"),
    "keys of mixed types": (hand_written("{1: 2, 'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3)}", V24),
                            400, "bad_npy"),
    "an unterminated string": (hand_written("{'descr': \'\'\'<f4", V24), 400, "bad_npy"),
    "deeply nested unary minus": (hand_written("-" * 3000 + "1", V24), 400, "bad_npy"),
    "a header over numpy's limit": (hand_written("{" + " " * 12_000 + "}", V24), 400, "bad_npy"),
    "complex numbers": (npy(np.ones((1, 2, 3), np.complex64)), 422, "bad_dtype"),
    "a structured dtype": (npy(np.zeros((1, 2, 3), [("a", "<f4")])), 422, "bad_dtype"),
    "a 1-d array": (npy(np.ones(3, np.float32)), 422, "bad_shape"),
    "a 0-d array": (npy(np.float32(1)), 422, "bad_shape"),
    "only the magic bytes": (b"\x93NUMPY", 400, "bad_npy"),
    "format version 3": (b"\x93NUMPY\x03\x00" + npy(np.ones((1, 1, 3), np.float32))[8:], 400, "bad_npy"),
    "a header cut short": (npy(np.ones((1, 2, 3), np.float32))[:40], 400, "bad_npy"),
    "a header that is not a literal": (hand_written("{'descr': __import__('os')}", b""), 400, "bad_npy"),
    "not npy": (b'{"inputs": [[[1, 2, 3]]]}', 400, "bad_npy"),
    "truncated values": (npy(np.ones((1, 2, 3), np.float32))[:-4], 400, "bad_npy"),
    "extra bytes": (npy(np.ones((1, 2, 3), np.float32)) + b"\0" * 4, 400, "bad_npy"),
    "a pickled object array": (npy(np.array([[[1, None, 3]]], dtype=object)), 422, "bad_dtype"),
    "strings": (npy(np.array([[["1", "2", "3"]]])), 422, "bad_dtype"),
    "booleans": (npy(np.ones((1, 1, 3), bool)), 422, "bad_dtype"),
    "wrong feature count": (npy(np.ones((1, 2, 4), np.float32)), 422, "bad_shape"),
    "one sequence without the batch axis": (npy(np.ones((2, 3), np.float32)), 422, "bad_shape"),
    "no steps": (npy(np.ones((1, 0, 3), np.float32)), 422, "empty_sequence"),
    "too many sequences": (npy(np.ones((9, 1, 3), np.float32)), 413, "too_many_sequences"),
    "too many steps": (npy(np.ones((1, 11, 3), np.float32)), 422, "sequence_too_long"),
    "NaN": (npy(np.array([[[1, np.nan, 3]]], np.float32)), 422, "non_finite"),
    "Inf": (npy(np.array([[[1, np.inf, 3]]], np.float64)), 422, "non_finite"),
    "beyond float32": (npy(np.array([[[1, 1e300, 3]]], np.float64)), 422, "non_finite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_bodies_are_refused_with_a_reason(case):
    raw, status, code = BAD[case]
    with pytest.raises(ApiError) as err:
        npy_array(raw, DIMS, 3, 8, 10)
    assert (err.value.status, err.value.code) == (status, code), err.value.message
    assert err.value.expected
    if code != "non_finite":
        assert "[sequences, steps, 3]" in err.value.expected
