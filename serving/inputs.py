"""Request bodies -> checked float32 arrays, or an ApiError that says what is wrong and what was expected."""
from __future__ import annotations

import json
import math
from itertools import chain

import numpy as np

try:  # JSON parsing was a quarter of the server's CPU time under load (py-spy)
    import orjson
except ImportError:
    orjson = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, expected: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.expected = status, code, message, expected
        self.headers = headers or {}

    def __reduce__(self):  # raised in the parse process (serving/parse_pool.py), re-raised in the server
        return ApiError, (self.status, self.code, self.message, self.expected, self.headers)

    def body(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.expected:
            err["expected"] = self.expected
        return {"error": err}


FLOAT32_ROUNDS_TO_INF = np.float64(2.0**128 - 2.0**103)  # float32 max plus half its last step; a numpy
# float64, so that comparing a float16 or float32 array with it happens in float64


def _no_constants(name: str):
    raise ApiError(422, "non_finite", f"{name} is not a number: NaN and Infinity are not allowed",
                   "finite numbers")


def parse_json(body: bytes) -> dict:
    if orjson is not None:  # about 5x faster; on any error the stdlib parser below names the problem
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            return data
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except RecursionError:  # orjson refuses nesting deeper than 1024; the stdlib parser runs out of stack
        raise ApiError(400, "bad_json", "body is nested too deeply", 'a JSON object like {"inputs": ...}') from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {exc}",
                       'a JSON object like {"inputs": ...}') from None
    if not isinstance(data, dict):
        raise ApiError(422, "bad_body", f"body is a JSON {type(data).__name__}, not an object",
                       'a JSON object like {"inputs": ...}')
    return data


def _is_number(v) -> bool:
    return type(v) in (int, float)


def _finite(v) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def _excerpt(v, limit: int = 40) -> str:
    """The start of v's JSON text. Walks v without recursion and only as far as it writes: a value nested a
    thousand deep overflowed json.dumps."""
    parts, size, stack, ends = [], 0, [iter((("", v),))], []
    while stack and size <= limit:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            text = ends.pop() if ends else ""
        else:
            prefix, item = entry
            if isinstance(item, list):
                text = prefix + "["
                stack.append(((", " if i else "", x) for i, x in enumerate(item)))
                ends.append("]")
            elif isinstance(item, dict):
                text = prefix + "{"
                pairs = enumerate(item.items())
                stack.append(((", " if i else "") + json.dumps(str(k)) + ": ", x) for i, (k, x) in pairs)
                ends.append("}")
            else:
                text = prefix + json.dumps(item[:limit + 1] if isinstance(item, str) else item)
        parts.append(text)
        size += len(text)
    text = "".join(parts)
    return text if len(text) <= limit and not stack else text[:limit] + "..."


def _locate(seq, num_features: int, where: str) -> str:
    """The first reason a sequence is not [steps][num_features] numbers (slow; only on the failure path)."""
    if not isinstance(seq, list):
        return f"{where} is a {type(seq).__name__}, not a list of steps"
    for t, step in enumerate(seq):
        if not isinstance(step, list):
            return f"{where}, step {t} is a {type(step).__name__}, not a list of {num_features} features"
        if len(step) != num_features:
            return f"{where}, step {t} has {len(step)} features, expected {num_features}"
        for j, v in enumerate(step):
            if not _is_number(v):
                return f"{where}, step {t}, feature {j} is {_excerpt(v)}, not a number"
            if not _finite(v):
                return f"{where}, step {t}, feature {j} is not finite"
    return f"{where} is malformed"


_NUMBERS_AND_LAYOUT = b"0123456789.eE+-[], \t\r\n"


def may_hide_non_numbers(raw: bytes) -> bool:
    """Whether a body may hold booleans, nulls or strings where numbers belong. numpy reads true as 1.0, null
    as NaN and "1.5" as 1.5, so such bodies get each value's type checked. What is left of a body without its
    numbers and layout is tiny, and only a string, true, false or null leave a quote, t, f or n in it."""
    rest = raw.translate(None, _NUMBERS_AND_LAYOUT).replace(b'"inputs"', b"", 1)
    return any(c in rest for c in b'"tfn')


def sequence(seq, num_features: int, max_steps: int, where: str, strict_types: bool) -> np.ndarray:
    """One sequence [steps][features] -> float32 [S, F]. `strict_types`: check every value is a JSON number
    (see may_hide_non_numbers); without it the values are only known to be non-string, non-boolean."""
    shape = f"[steps][{num_features}] numbers"
    if not isinstance(seq, list):
        raise ApiError(422, "bad_shape", _locate(seq, num_features, where), shape)
    if not seq:
        raise ApiError(422, "empty_sequence", f"{where} is empty", f"1..{max_steps} steps")
    if len(seq) > max_steps:
        raise ApiError(422, "sequence_too_long", f"{where} has {len(seq)} steps, more than the limit {max_steps}",
                       f"1..{max_steps} steps")
    arr = None
    try:  # map(len) and fromiter over the flat values: 2x faster than np.array's walk of the nested lists
        if set(map(len, seq)) == {num_features} and (
                not strict_types or all(_is_number(v) for step in seq for v in step)):
            arr = np.fromiter(chain.from_iterable(seq), np.float64, len(seq) * num_features)
    except (ValueError, TypeError, OverflowError):  # a number for a step, a list or object for a value, an int
        arr = None  # beyond float range (a string, true, false or null made strict_types check them)
    if arr is None:
        raise ApiError(422, "bad_input", _locate(seq, num_features, where), shape)
    return finite_float32(arr.reshape(len(seq), num_features), where)


def finite_float32(values: np.ndarray, where: str) -> np.ndarray:
    """Numbers -> float32, refusing NaN, Infinity and finite values beyond float32's range (e.g. 1e300)."""
    largest = np.abs(values).max()  # NaN if any value is NaN
    if not largest < FLOAT32_ROUNDS_TO_INF:
        what = "values beyond float32's range" if np.isfinite(largest) else "NaN or Infinity"
        raise ApiError(422, "non_finite", f"{where} holds {what}", "finite float32 numbers")
    return values.astype(np.float32)


def predict_inputs(data: dict, num_features: int, max_items: int, max_steps: int, strict: bool) -> list[np.ndarray]:
    expected = f'{{"inputs": [[[{num_features} numbers] per step] per sequence]}}, 1..{max_items} sequences'
    batch = data.get("inputs")
    if not isinstance(batch, list):
        raise ApiError(422, "bad_body", 'missing "inputs" list' if batch is None else
                       f'"inputs" is a {type(batch).__name__}, not a list of sequences', expected)
    if not batch:
        raise ApiError(422, "empty_batch", '"inputs" holds no sequences', expected)
    if len(batch) > max_items:
        raise ApiError(413, "too_many_sequences", f'"inputs" holds {len(batch)} sequences, more than the limit '
                       f"{max_items}", expected)
    if not isinstance(batch[0], list) or not batch[0] or not isinstance(batch[0][0], list):
        raise ApiError(422, "bad_nesting", '"inputs" must be nested three deep: sequences, steps, features',
                       expected)
    return [sequence(seq, num_features, max_steps, f"sequence {k}", strict) for k, seq in enumerate(batch)]


def step_inputs(data: dict, num_features: int, max_steps: int, strict: bool) -> np.ndarray:
    expected = f'{{"inputs": [[{num_features} numbers] per step]}}, 1..{max_steps} steps'
    chunk = data.get("inputs")
    if not isinstance(chunk, list):
        raise ApiError(422, "bad_body", 'missing "inputs" list' if chunk is None else
                       f'"inputs" is a {type(chunk).__name__}, not a list of steps', expected)
    if chunk and not isinstance(chunk[0], list):
        raise ApiError(422, "bad_nesting", '"inputs" must be nested two deep: steps, features', expected)
    return sequence(chunk, num_features, max_steps, "inputs", strict)

