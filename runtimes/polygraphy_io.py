"""Polygraphy's JSON files of feeds and outputs, read and written by hand (no polygraphy import, no torch).

Formats (polygraphy/json/serde.py, polygraphy/comparator/struct.py, 0.49 to 0.53): an array is
`{"array": base64(np.save payload), "polygraphy_class": "ndarray"}`. `run --save-inputs X.json` writes a JSON
list, one feed dict (name -> array) per iteration. `run --save-outputs X.json` writes RunResults:
`{"lst": [[runner, [IterationResult, ...]], ...], "polygraphy_class": "RunResults"}`, each IterationResult
`{"outputs": {name: LazyArray}, "runtime": s, "runner_name": runner, "polygraphy_class": "IterationResult"}`
and each LazyArray `{"values": array, "polygraphy_class": "LazyArray"}`. Older files mark a class with the key
`__polygraphy_encoded_<Class>` instead; both are read. `run --load-outputs X.json` compares against such a file.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path

import numpy as np

from lstm_onnx.runtimes.base import error_message

MARKER = "polygraphy_class"
LEGACY_VALUE = "polygraphy_serialized_json_type"  # older files: {"__polygraphy_encoded_ndarray": LEGACY_VALUE}
MAX_JSON_BYTES = 384 << 20  # base64 is 4/3 of the arrays: ~288 MiB of them, as load_npz's 256 MiB cap


def read_inputs_json(path, iteration: int = 0) -> dict[str, np.ndarray]:
    """Feeds (name -> array) of one iteration of a `polygraphy run --save-inputs` file."""
    path = Path(path)
    data = _load(path, "inputs")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"{path} is not Polygraphy inputs (--save-inputs writes a JSON list of feed dicts)")
    if not 0 <= iteration < len(data):
        raise ValueError(f"{path} holds {len(data)} iteration(s) of inputs; there is no iteration {iteration}")
    return {name: _array(value, path, f"input {name!r}") for name, value in data[iteration].items()}


def read_outputs_json(path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Runner name -> its iterations' outputs (name -> array), from a `polygraphy run --save-outputs` file."""
    path = Path(path)
    data = _load(path, "outputs")
    if not (_is_class(data, "RunResults") and isinstance(data.get("lst"), list)):
        raise ValueError(f"{path} is not Polygraphy outputs (--save-outputs writes RunResults: a "
                         f'{{"lst": [[runner, [iteration, ...]]]}} object)')
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    for entry in data["lst"]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], list)):
            raise ValueError(f"{path}: each RunResults entry must be [runner name, [iteration, ...]]")
        runner, iterations = entry
        results[runner] = [_iteration(it, path, runner, i) for i, it in enumerate(iterations)]
    if not results:
        raise ValueError(f"{path} holds no runner's outputs")
    return results


def write_inputs_json(path, feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]]) -> None:
    """Feeds as `polygraphy run --load-inputs` reads them: a list of feed dicts (one per iteration)."""
    iterations = [feeds] if isinstance(feeds, dict) else list(feeds)
    _write(path, [{name: _encode(a) for name, a in it.items()} for it in iterations])


def write_outputs_json(path, runner_name: str,
                       outputs: dict[str, np.ndarray] | list[dict[str, np.ndarray]]) -> None:
    """Outputs (one iteration's dict, or a list of them) of `runner_name` as a RunResults file, which
    `polygraphy run MODEL --onnxrt --load-outputs PATH` compares its own runners against."""
    iterations = [outputs] if isinstance(outputs, dict) else list(outputs)
    results = [{"outputs": {name: {"values": _encode(a), MARKER: "LazyArray"} for name, a in it.items()},
                "runtime": 0.0, "runner_name": runner_name, MARKER: "IterationResult"}
               for it in iterations]
    _write(path, {"lst": [[runner_name, results]], MARKER: "RunResults"})


def _write(path, obj) -> None:
    from lstm_onnx.core.fileio import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=4))


def _encode(array) -> dict:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return {"array": base64.b64encode(buf.getvalue()).decode(), MARKER: "ndarray"}


def _load(path: Path, what: str):
    if not path.is_file():
        raise ValueError(f"Polygraphy {what} file not found: {path}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size / 2**20:.0f} MiB; a Polygraphy {what} file may be at "
                         f"most {MAX_JSON_BYTES >> 20} MiB")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file of Polygraphy {what}: {error_message(exc)}") from None


def _is_class(obj, name: str) -> bool:
    return isinstance(obj, dict) and (obj.get(MARKER) == name or
                                      obj.get(f"__polygraphy_encoded_{name}") == LEGACY_VALUE)


def _iteration(obj, path: Path, runner: str, index: int) -> dict[str, np.ndarray]:
    where = f"runner {runner!r} iteration {index}"
    if not (_is_class(obj, "IterationResult") and isinstance(obj.get("outputs"), dict)):
        raise ValueError(f"{path}: {where} is not a Polygraphy IterationResult (an object with \"outputs\")")
    out = {}
    for name, value in obj["outputs"].items():
        if _is_class(value, "LazyArray") or _is_class(value, "LazyNumpyArray"):
            value = value.get("values")
        out[name] = _array(value, path, f"{where} output {name!r}")
    return out


def _array(obj, path: Path, what: str) -> np.ndarray:
    if _is_class(obj, "Tensor"):
        raise ValueError(f"{path}: {what} is a torch Tensor; save NumPy arrays (Polygraphy without torch tensors)")
    if not (_is_class(obj, "ndarray") and isinstance(obj.get("array"), str)):
        raise ValueError(f"{path}: {what} is not a Polygraphy array "
                         f'({{"array": base64 of np.save, "{MARKER}": "ndarray"}})')
    try:
        data = base64.b64decode(obj["array"].encode(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{path}: {what} is not valid base64: {exc}") from None
    return _npy(data, path, what)


def _npy(data: bytes, path: Path, what: str) -> np.ndarray:
    """The array of an np.save payload, its size checked against its header before anything is allocated."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(buf)
    except Exception as exc:  # a damaged .npy header: ValueError, EOFError, SyntaxError, ...
        raise ValueError(f"{path}: {what} is not a readable np.save payload: {error_message(exc)}") from None
    want, have = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, len(data) - buf.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {what} holds Python objects; only numeric arrays are read")
    if have != want:
        raise ValueError(f"{path}: {what} is damaged: its header says {list(shape)} {dtype} ({want} bytes) but "
                         f"{have} bytes follow")
    buf.seek(0)
    return np.load(buf, allow_pickle=False)
