"""hypothesis strategies for what a hostile or broken client sends: bodies (JSON and .npy, well-formed or not),
content types and raw request heads."""
from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import strategies as st

F = 3  # tests.models.F: the served models' feature count

NUMBER_TEXT = st.sampled_from([
    "1", "-0", "1.5", "1e38", "3.4028235e38", "3.5e38", "1e39", "-1e309", "1e-400", "1" + "0" * 400, "1" + "0" * 5000,
    "NaN", "Infinity", "-Infinity", "nan", "inf", '"NaN"', '"1.5"', "0x10", "+1", ".5", "01", "1.", "true", "null",
    "[]", "{}", '""', '"\\ud800"'])


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20)


@st.composite
def number_grid(draw, dims: int) -> str:
    """JSON text of a [sequences][steps][F] (dims 3) or [steps][F] (dims 2) array whose values are drawn from
    odd spellings of numbers (and non-numbers), with an occasional wrong feature count."""
    def step():
        n = draw(st.sampled_from([F, F, F, F - 1, F + 1, 0]))
        return "[" + ", ".join(draw(NUMBER_TEXT) if draw(st.booleans()) else "1.0" for _ in range(n)) + "]"

    def seq():
        return "[" + ", ".join(step() for _ in range(draw(st.integers(0, 3)))) + "]"

    return "[" + ", ".join(seq() for _ in range(draw(st.integers(0, 3)))) + "]" if dims == 3 else seq()


JSON_KINDS = ("deep_value", "grid", "deep", "huge_number", "duplicate", "truncated", "bad_utf8", "any", "not_object",
              "bom", "empty", "whitespace")


@st.composite
def json_bodies(draw, dims: int = 3) -> bytes:
    """Bodies for a predict (dims 3) or step (dims 2) route: right-looking, odd, deep, duplicated, broken."""
    kind = draw(st.sampled_from(JSON_KINDS))
    grid = draw(number_grid(dims))
    if kind == "grid":
        text = '{"inputs": %s}' % grid
    elif kind == "any":
        text = json.dumps({"inputs": draw(json_values)})
    elif kind == "deep":  # around the parsers' limits: orjson stops at 1024, the stdlib at the recursion limit
        text = '{"inputs": %s}' % nested(draw(st.sampled_from([1000, 1024, 1025, 5000, 2, 3, 4])))
    elif kind == "deep_value":  # a well-shaped array with one feature nested deep: the excerpt must not recurse
        depth = draw(st.sampled_from([1000, 900, 1020, 1, 50]))
        text = '{"inputs": %s}' % (nested(dims - 1, "[1.0, %s, 3.0]" % nested(depth)))
    elif kind == "duplicate":
        text = '{"inputs": %s, "inputs": %s}' % (grid, draw(number_grid(dims)))
    elif kind == "not_object":
        text = draw(st.sampled_from([grid, "1", '"inputs"', "null", "true", "[]"]))
    elif kind == "huge_number":
        text = '{"inputs": %s}' % nested(dims - 1, "[1.0, %s, 3.0]" % draw(NUMBER_TEXT))
    elif kind == "empty":
        return b""
    elif kind == "whitespace":
        return draw(st.sampled_from([b" ", b"\n", b"\t\r\n ", b"\x00"]))
    else:
        text = '{"inputs": %s}' % grid
    raw = text.encode()
    if kind == "truncated":
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])) + raw[at:]
    elif kind == "bom":
        raw = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])) + raw
    return raw


def npy_bytes(arr: np.ndarray) -> bytes:
    fp = io.BytesIO()
    np.save(fp, arr, allow_pickle=True)
    return fp.getvalue()


@st.composite
def npy_bodies(draw, dims: int = 3) -> bytes:
    """.npy bodies: the right shape or not, odd dtypes, pickled objects, truncated or mangled headers."""
    rank = draw(st.sampled_from([dims, dims, dims, 0, 1, dims + 1]))
    shape = tuple(draw(st.integers(0, 3)) for _ in range(rank - 1)) + ((draw(st.sampled_from([F, F, 2, 0])),)
                                                                         if rank else ())
    dtype = draw(st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "|b1", "<c8", "|S3", "<U2", "O",
                                  "<M8[s]"]))
    count = int(np.prod(shape)) if shape else 1
    values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=count,
                           max_size=count))
    if dtype == "O":
        arr = np.empty(shape, object)
        arr.flat[:] = [None] * count
    else:
        with np.errstate(all="ignore"):
            arr = np.asarray(values, np.float64).reshape(shape).astype(dtype)
    raw = npy_bytes(arr if not draw(st.booleans()) else np.asfortranarray(arr))
    how = draw(st.sampled_from(["as_is", "as_is", "truncate", "mangle", "extend", "version"]))
    if how == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif how == "mangle":  # overwrite some header bytes: the regex fast path fails, numpy's parser gets it
        at = draw(st.integers(0, min(len(raw), 128) - 1))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at + 1:]
    elif how == "extend":
        raw += draw(st.binary(min_size=1, max_size=16))
    elif how == "version":
        raw = raw[:6] + bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))]) + raw[8:]
    return raw


CONTENT_TYPES = st.sampled_from([
    "application/json", "application/x-npy", "APPLICATION/X-NPY", "application/x-npy; charset=binary",
    "application/json; charset=latin-1", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream", "", ";", "application/x-npy;;;=",
    "application/\u00e9"])


JSON_TYPES = st.sampled_from(["application/json", "", "application/json; charset=latin-1", "text/plain",
                              "application/x-www-form-urlencoded"])
NPY_TYPES = st.sampled_from(["application/x-npy", "APPLICATION/X-NPY", "application/x-npy; charset=binary"])


def bodies(dims: int, kind: str):
    """(body, content type): JSON bodies with JSON-ish types, .npy with .npy types, or either with any type."""
    if kind == "json":
        return st.tuples(json_bodies(dims), JSON_TYPES)
    if kind == "npy":
        return st.tuples(npy_bodies(dims), NPY_TYPES)
    return st.tuples(json_bodies(dims) | npy_bodies(dims), CONTENT_TYPES)
