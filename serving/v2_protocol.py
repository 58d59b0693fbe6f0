"""Open Inference Protocol (KServe v2, as Triton speaks it) tensors: an infer body -> checked arrays, and y ->
a response body, JSON or with Triton's binary tensor extension (a JSON header of Inference-Header-Content-Length
bytes, then each binary tensor's raw little-endian bytes in order). Errors are {"error": "<one line>"}.
Outside serving/protocols/ because both v2 transports use it: over HTTP (protocols/v2_rest.py) and gRPC
(protocols/v2_grpc.py, which takes the checks and the error line from here)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain

import numpy as np

from lstm_onnx.serving.inputs import FLOAT32_ROUNDS_TO_INF, ApiError, finite_float32, parse_json

HEADER_LENGTH = "inference-header-content-length"
DTYPES = {"FP32": np.dtype("<f4"), "INT32": np.dtype("<i4")}
INPUTS = {"x": "FP32", "lengths": "INT32"}
OUTPUTS = {"y": "FP32"}
UNSUPPORTED = ("shared_memory_region", "classification")
MAX_SEQUENCE_ID = 256  # characters of a string sequence_id (a UUID is 36)


def error_body(exc: ApiError) -> dict:
    """The protocol's error shape: one string."""
    return {"error": exc.message + (f" (expected {exc.expected})" if exc.expected else "")}


def bad(message: str, expected: str | None = None) -> ApiError:
    return ApiError(400, "bad_request", message, expected)


@dataclass
class InferRequest:
    id: str | None
    x: np.ndarray  # float32 [B, S, F], raw features
    lengths: np.ndarray | None  # int32 [B], each 1..S
    outputs: dict  # requested output name -> whether it goes back binary
    sequence: tuple | None  # (key, start, end) for the sequence extension, None without a sequence_id
    largest: float | None = None  # max |x| where decoding measured it (binary FP32), for the range check


def header_length(headers) -> int | None:
    """Inference-Header-Content-Length from ASGI headers, or None."""
    for name, value in headers:
        if name == HEADER_LENGTH.encode():
            if not value.isdigit():
                raise bad(f"Inference-Header-Content-Length is {value.decode('latin-1')!r}", "a byte count")
            return int(value)
    return None


def parse_infer(raw: bytes, head_len: int | None, num_features: int, max_items: int, max_steps: int) -> InferRequest:
    """An infer body (and its Inference-Header-Content-Length) -> InferRequest, or the ApiError saying why not."""
    if head_len is None:
        head, binary = raw, b""
    elif not 0 < head_len <= len(raw):
        raise bad(f"Inference-Header-Content-Length {head_len} does not fit a body of {len(raw)} bytes")
    else:
        head, binary = raw[:head_len], memoryview(raw)[head_len:]
        plan = PLANS.get((head, num_features, max_items, max_steps)) if len(head) <= MAX_PLAN_HEAD else None
        if plan is not None:
            req = _planned(plan, binary)
            if req is not None:
                return req
    data = parse_json(head)
    params = _dict(data.get("parameters"), "parameters")
    tensors, largest, layout = _inputs(data.get("inputs"), binary, num_features, max_items, max_steps)
    x, lengths = tensors["x"], tensors.get("lengths")
    check_lengths(x, lengths)
    rid = data.get("id")
    req = InferRequest(None if rid is None else str(rid), x, lengths, _outputs(data.get("outputs"), params),
                       sequence_of(params), largest)
    if (binary and len(head) <= MAX_PLAN_HEAD and req.id is None and req.sequence is None
            and all(size is not None for *_, size in layout)):
        if len(PLANS) >= MAX_PLANS:
            PLANS.clear()
        PLANS[head, num_features, max_items, max_steps] = (dict(req.outputs), tuple(layout))
    return req


# A client sending tensors of one shape sends the same JSON header every time (tritonclient and perf_analyzer
# do), and parsing and checking it was most of a binary request's decoding. A header whose inputs are all binary
# and which carries no id or sequence_id (those change per request) is remembered with what it decoded to.
PLANS: dict[tuple, tuple] = {}  # (head, num_features, max_items, max_steps) -> (outputs, [(name, shape, datatype, size)])
MAX_PLANS = 256  # bounds on memory: emptied when full, then refilled by the headers in use
MAX_PLAN_HEAD = 4096  # bytes; a binary request's header is a few hundred


def _planned(plan: tuple, binary) -> InferRequest | None:
    """The request a remembered header makes with this binary part; None where the sizes do not add up, for the
    full path to say why."""
    outputs, layout = plan
    if sum(size for *_, size in layout) != len(binary):
        return None
    tensors, offset, largest = {}, 0, None
    for name, shape, datatype, size in layout:
        values = np.frombuffer(binary[offset:offset + size], DTYPES[datatype])
        offset += size
        if datatype == "FP32":
            largest = finite_max(values, name)  # x is the one FP32 input
        else:
            values = checked(values, datatype, name)
        tensors[name] = values.reshape(shape)
    x, lengths = tensors["x"], tensors.get("lengths")
    check_lengths(x, lengths)
    return InferRequest(None, x, lengths, dict(outputs), None, largest)


def check_lengths(x: np.ndarray, lengths: np.ndarray | None) -> None:
    if lengths is not None and (lengths.shape != (len(x),) or lengths.min() < 1 or lengths.max() > x.shape[1]):
        raise bad(f"lengths {lengths.tolist()} do not fit x of shape {list(x.shape)}",
                  f"{len(x)} integers in 1..{x.shape[1]}")


def _dict(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"{where} is a {type(value).__name__}, not an object")
    return value


def _inputs(entries, binary, num_features: int, max_items: int, max_steps: int) -> dict:
    if not isinstance(entries, list) or not entries:
        raise bad('missing "inputs" list', 'an "inputs" list with a tensor named "x"')
    tensors, offset, largest, layout = {}, 0, {}, []
    for k, entry in enumerate(entries):
        entry = _dict(entry, f"inputs[{k}]")
        name = entry.get("name")
        if name not in INPUTS:
            raise bad(f"unknown input {name!r}", f"inputs named {', '.join(INPUTS)}")
        if name in tensors:
            raise bad(f"input {name!r} is given twice")
        want = INPUTS[name]
        if entry.get("datatype") != want:
            raise bad(f"input {name!r} has datatype {entry.get('datatype')!r}", want)
        shape = check_shape(entry.get("shape"), name, num_features, max_items, max_steps)
        params = _dict(entry.get("parameters"), f"input {name!r} parameters")
        if any(p in params for p in UNSUPPORTED):
            raise bad(f"input {name!r} asks for shared memory, which this server does not offer",
                      "data in the body")
        size = params.get("binary_data_size")
        if size is not None:
            offset, values = _binary(binary, offset, size, shape, want, name)
            if want == "FP32":
                largest[name] = finite_max(values, name)
        else:
            values = _json_values(entry.get("data"), shape, want, name)
        tensors[name] = values.reshape(shape)
        layout.append((name, shape, want, size))
    if offset != len(binary):
        raise bad(f"the body has {len(binary)} bytes after the JSON header, the inputs' binary_data_size add "
                  f"up to {offset}")
    if "x" not in tensors:
        raise bad('missing input "x"', "FP32 x shaped [batch, steps, features]")
    return tensors, largest.get("x"), layout


def check_shape(shape, name: str, num_features: int, max_items: int, max_steps: int) -> tuple:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"input {name!r} has shape {shape!r}", "a list of non-negative integers")
    if name == "lengths":
        if len(shape) != 1:
            raise bad(f"input 'lengths' has shape {shape}", "[batch]")
        return tuple(shape)
    expected = f"[1..{max_items}, 1..{max_steps}, {num_features}]"
    if len(shape) != 3 or shape[2] != num_features or not 1 <= shape[1] <= max_steps:
        raise bad(f"input 'x' has shape {shape}", expected)
    if shape[0] == 0:
        raise bad(f"input 'x' has shape {shape}: an empty batch", expected)
    if shape[0] > max_items:
        raise ApiError(413, "too_many_sequences", f"input 'x' has shape {shape}, over the limit of {max_items} "
                       f"sequences", expected)
    return tuple(shape)


def _binary(binary, offset: int, size, shape: tuple, datatype: str, name: str) -> tuple:
    dtype = DTYPES[datatype]
    want = math.prod(shape) * dtype.itemsize
    if type(size) is not int or size != want:
        raise bad(f"input {name!r} has binary_data_size {size!r}; shape {list(shape)} of {datatype} is {want} bytes")
    if offset + size > len(binary):
        raise bad(f"input {name!r} needs bytes {offset}..{offset + size} after the JSON header; the body has "
                  f"{len(binary)}")
    values = np.frombuffer(binary[offset:offset + size], dtype)
    return offset + size, values if datatype == "FP32" else checked(values, datatype, name)


def _json_values(data, shape: tuple, datatype: str, name: str) -> np.ndarray:
    """`data` flat (row-major) or nested as the shape -> a checked array."""
    if not isinstance(data, list):
        raise bad(f"input {name!r} has no data list (and no binary_data_size)", "data or binary_data_size")
    flat = data
    for depth in range(len(shape) - 1):  # nested lists: check each level's length, then flatten it
        if not flat or not isinstance(flat[0], list):
            break
        if not all(isinstance(row, list) and len(row) == shape[depth + 1] for row in flat):
            raise bad(f"input {name!r}: nested data does not match shape {list(shape)}")
        flat = list(chain.from_iterable(flat))
    count = math.prod(shape)
    if len(flat) != count:
        raise bad(f"input {name!r} has {len(flat)} values; shape {list(shape)} needs {count}")
    number = {int, float} if datatype == "FP32" else {int}
    if not set(map(type, flat)) <= number:  # map(type) runs in C: a third of a generator's time
        bad_value = next(v for v in flat if type(v) not in number)
        raise bad(f"input {name!r} holds {bad_value!r}", f"{datatype} numbers")
    try:
        values = np.fromiter(flat, np.float64 if datatype == "FP32" else np.int64, count)
    except OverflowError:
        raise ApiError(422, "non_finite", f"input {name!r} holds numbers beyond float range", "finite numbers") from None
    if datatype == "INT32" and count and (values.min() < -2**31 or values.max() >= 2**31):
        raise bad(f"input {name!r} holds values beyond INT32")
    return checked(values, datatype, name)


def finite_max(values: np.ndarray, name: str) -> float:
    """max |value| of float32 values, refused as finite_float32 refuses NaN and Infinity (0 for none). One pass
    serves the range check too, where finite_float32 then range_problem would take two."""
    largest = float(np.abs(values).max()) if values.size else 0.0  # NaN if any value is NaN
    if not largest < FLOAT32_ROUNDS_TO_INF:
        raise ApiError(422, "non_finite", f"input {name!r} holds NaN or Infinity", "finite float32 numbers")
    return largest


def checked(values: np.ndarray, datatype: str, name: str) -> np.ndarray:
    if datatype == "FP32":
        return finite_float32(values, f"input {name!r}") if values.size else values.astype(np.float32)
    return values.astype(np.int32)


def _outputs(entries, params: dict) -> dict:
    """Requested output -> binary? All outputs when none are named, binary if binary_data_output says so."""
    default = _flag(params, "binary_data_output", "parameters")
    if entries is None:
        return {name: default for name in OUTPUTS}
    if not isinstance(entries, list):
        raise bad('"outputs" is not a list')
    wanted = {}
    for k, entry in enumerate(entries):
        entry = _dict(entry, f"outputs[{k}]")
        name = entry.get("name")
        if name not in OUTPUTS:
            raise bad(f"unknown output {name!r}", f"outputs named {', '.join(OUTPUTS)}")
        out_params = _dict(entry.get("parameters"), f"output {name!r} parameters")
        if any(out_params.get(p) for p in UNSUPPORTED):
            raise bad(f"output {name!r} asks for shared memory or classification, which this server does not offer")
        wanted[name] = _flag(out_params, "binary_data", f"output {name!r} parameters", default)
    return wanted


def _flag(params: dict, key: str, where: str, default: bool = False) -> bool:
    """A boolean parameter; "false" is a string, and truthy, so anything but a JSON boolean is refused."""
    value = params.get(key, default)
    if type(value) is not bool:
        raise bad(f"{where}: {key} is {value!r}", "true or false")
    return value


def sequence_of(params: dict) -> tuple | None:
    """(session key, start, end); tritonclient sends no sequence_id, or 0 / "", for requests outside one."""
    sid = params.get("sequence_id")
    if sid is None or sid == 0 or sid == "":
        return None
    if type(sid) not in (int, str):
        raise bad(f"sequence_id is {sid!r}", "an integer or a string")
    if type(sid) is int and not 0 < sid < 2**64:
        raise bad(f"sequence_id {sid} is out of range", "an unsigned 64-bit integer, as Triton's")
    if type(sid) is str and len(sid) > MAX_SEQUENCE_ID:  # ids are kept while a sequence is open: bound them
        raise bad(f"sequence_id is a string of {len(sid)} characters", f"at most {MAX_SEQUENCE_ID}")
    flags = [params.get(k, False) for k in ("sequence_start", "sequence_end")]
    if not all(type(f) is bool for f in flags):
        raise bad(f"sequence_start / sequence_end are {flags}", "booleans")
    # v1 session ids never hold "/", so these keys cannot meet one; an int and a string id are different sequences
    return (f"v2/{type(sid).__name__}/{sid}", *flags)


def encode_infer(model: str, version: str, rid: str | None, outputs: dict, arrays: dict) -> tuple[object, dict]:
    """(payload, headers): a dict for a JSON reply, or bytes (JSON header + binary tensors) with the
    Inference-Header-Content-Length header when any output goes back binary."""
    entries, blobs = [], []
    for name, binary in outputs.items():
        y = np.ascontiguousarray(arrays[name], DTYPES[OUTPUTS[name]])
        entry = {"name": name, "datatype": OUTPUTS[name], "shape": list(y.shape)}
        if binary:
            blobs.append(y.tobytes())
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = y.reshape(-1).tolist()
        entries.append(entry)
    payload = {"model_name": model, "model_version": version, "outputs": entries}
    if rid is not None:
        payload["id"] = rid
    if not blobs:
        return payload, {}
    from lstm_onnx.serving.hotpath import dumps

    head = dumps(payload)
    return head + b"".join(blobs), {"Inference-Header-Content-Length": len(head)}
