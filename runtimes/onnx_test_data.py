"""ONNX's backend test format: a model folder with model.onnx and test_data_set_N/{input,output}_K.pb.

Each .pb is a serialized onnx.TensorProto named after its graph input or output; K follows the graph's input
(or output) order, and a tensor without a name is matched by that position. `verify --test-data DIR` checks
every data set (runtimes/verify_data_sets.py: its inputs are the feeds, its outputs the expected outputs);
`verify --save-test-data DIR` writes the feeds and the baseline's outputs this way. ONNX's own LSTM node tests
are folders of this kind (onnx_lstm_tests). This module knows the format, not verify: it matches files to the
model's inputs and outputs by name and position; verify checks their dtypes and shapes.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_onnx.runtimes.base import error_message
from lstm_onnx.runtimes.onnx_graph import io_names, load_model

DATA_SET = re.compile(r"test_data_set_(\d+)")
TENSOR = re.compile(r"(input|output)_(\d+)\.pb")
MODEL_FILE = "model.onnx"


@dataclass
class DataSet:
    path: Path
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def read_test_data(folder, model=None) -> list[tuple[dict, dict]]:
    """(inputs, outputs) of each test_data_set_N, in the order of N. `model`: a path or ModelProto; by
    default the folder's model.onnx."""
    return [(d.inputs, d.outputs) for d in read_data_sets(folder, model)]


def read_data_sets(folder, model=None) -> list[DataSet]:
    """The data sets of a model folder, or the one data set a test_data_set folder is, each matched to the
    model's inputs and outputs (one tensor for each, no other). ValueError, one line, for anything wrong."""
    model_path, sets = locate(folder, model)
    model = model if is_proto(model) else load_model(model_path)
    return [_read_set(path, model) for path in sets]


def locate(folder, model=None) -> tuple[Path | None, list[Path]]:
    """(the model's path, the data set folders). A model folder's model.onnx unless `model` is given; a
    lone test_data_set folder needs `model`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"test data folder not found: {folder}" if not folder.exists() else
                         f"{folder} is a file; --test-data takes a folder with model.onnx and test_data_set_N/")
    sets = sorted((p for p in folder.iterdir() if p.is_dir() and DATA_SET.fullmatch(p.name)),
                  key=lambda p: int(DATA_SET.fullmatch(p.name).group(1)))
    if not sets and any(TENSOR.fullmatch(p.name) for p in folder.iterdir()):
        sets = [folder]  # a data set folder itself
    if not sets:
        raise ValueError(f"{folder} holds no test_data_set_N folder (nor input_K.pb files); an ONNX test data "
                         f"folder has model.onnx and test_data_set_0/input_0.pb ...")
    if model is not None:
        return (None if is_proto(model) else Path(model)), sets
    if sets == [folder]:
        raise ValueError(f"{folder} is one data set: name its MODEL too")
    if not (folder / MODEL_FILE).is_file():
        raise ValueError(f"{folder} has no {MODEL_FILE}: name the MODEL the data sets are for")
    return folder / MODEL_FILE, sets


def _read_set(path: Path, model) -> DataSet:
    inits = {t.name: t for t in model.graph.initializer}
    inputs = _read_tensors(path, "input", [vi.name for vi in model.graph.input], optional=set(inits))
    for name in [n for n in inputs if n in inits]:
        _drop_default(inputs, name, inits[name], path)
    outputs = _read_tensors(path, "output", [vi.name for vi in model.graph.output])
    return DataSet(path, inputs, outputs)


def _drop_default(inputs: dict, name: str, init, folder: Path) -> None:
    """An input an initializer backs (old IR versions list them) may be given, as its initializer's value;
    verify feeds only the real inputs."""
    from onnx import numpy_helper

    default = numpy_helper.to_array(init, str(folder))
    if inputs[name].shape != default.shape or not np.array_equal(inputs[name], default):
        raise ValueError(f"{folder} gives input {name!r} a value other than its initializer's; verify feeds only "
                         f"the graph's real inputs")
    del inputs[name]


def _read_tensors(folder: Path, kind: str, names: list[str], optional=frozenset()) -> dict[str, np.ndarray]:
    """{graph name: array} from folder's {kind}_K.pb: K counts 0, 1, ... with no gap, one file per name, a
    file for each name not `optional`."""
    files = {int(m.group(2)): p for p in folder.iterdir() if (m := TENSOR.fullmatch(p.name)) and m.group(1) == kind}
    gap = next((k for k in range(len(files)) if k not in files), None)
    if gap is not None:
        raise ValueError(f"{folder} has {', '.join(sorted(p.name for p in files.values()))} but no {kind}_{gap}.pb")
    if len(files) > len(names):
        raise ValueError(f"{folder} holds {len(files)} {kind}_K.pb; the model has {len(names)} {kind}s {names}")
    arrays: dict[str, np.ndarray] = {}
    for k in sorted(files):
        name, value = _read_tensor(files[k], folder)
        name = name or names[k]  # an unnamed tensor is the K-th graph input (output)
        if name not in names:
            raise ValueError(f"{files[k]} is tensor {name!r}; the model's {kind}s are {names}")
        if name in arrays:
            raise ValueError(f"{folder}: two {kind}_K.pb hold {kind} {name!r}")
        arrays[name] = value
    missing = [(n, names.index(n)) for n in names if n not in arrays and n not in optional]
    if missing:
        name, k = missing[0]
        raise ValueError(f"{folder} has no {kind} {name!r} (the model's {kind} {k}: {kind}_{k}.pb)")
    return arrays


def _read_tensor(path: Path, base: Path) -> tuple[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return tensor.name, np.array(numpy_helper.to_array(tensor, str(base)))  # writable: torch warns otherwise
    except Exception as exc:  # protobuf's DecodeError, an unknown data_type, a short raw_data, ...
        raise ValueError(f"{path} is not a serialized onnx.TensorProto: {error_message(exc)}") from None


def write_test_data(folder, model, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Path:
    """Write `folder` as a model folder: model.onnx (a path or ModelProto; external data inlined) and
    test_data_set_0 with the feeds and outputs, in graph order. The folder appears whole or not at all: it
    is built beside its target and renamed over it; an existing target must be empty or one we wrote.
    ArtifactWriteError (one line) if the OS refuses."""
    from lstm_onnx.core.fileio import ArtifactWriteError, current_umask, replace_folder

    folder = Path(folder)
    proto = model if is_proto(model) else load_model(model, external=True)
    body = _serialize(proto, model)
    _check_replaceable(folder)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        (tmp / MODEL_FILE).write_bytes(body)
        _write_set(tmp / "test_data_set_0", proto, feeds, outputs)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's is 0700
        replace_folder(tmp, folder)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ArtifactWriteError(folder, exc) from exc
        raise
    return folder


def _write_set(data: Path, model, feeds: dict, outputs: dict) -> None:
    inputs, output_names = io_names(model.graph)
    data.mkdir()
    _write_tensors(data, "input", [(n, feeds[n]) for n in inputs])
    _write_tensors(data, "output", [(n, outputs[n]) for n in output_names])


def _write_tensors(data: Path, kind: str, named) -> None:
    """`kind`_K.pb for the K-th (name, array or TensorProto) of `named`, in graph order."""
    from onnx import TensorProto, numpy_helper

    for k, (name, value) in enumerate(named):
        tensor = value if isinstance(value, TensorProto) else numpy_helper.from_array(np.asarray(value), name)
        (data / f"{kind}_{k}.pb").write_bytes(tensor.SerializeToString())


def _check_replaceable(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; --save-test-data takes a folder to write")
    if folder.is_dir():
        extra = sorted(p.name for p in folder.iterdir() if p.name not in (MODEL_FILE, "test_data_set_0"))
        if extra:
            raise ValueError(f"{folder} holds {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}; "
                             f"--save-test-data writes a new or empty folder (or replaces one it wrote)")


def _serialize(proto, source) -> bytes:
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit
        raise ValueError(f"{source} is too large to copy as one model.onnx: {error_message(exc)}") from None


def is_proto(model) -> bool:
    return hasattr(model, "graph")


# -- ONNX's own LSTM node tests

def onnx_lstm_tests(dest) -> list[Path]:
    """ONNX's test_lstm_* node test folders: the installed onnx package's backend/test/data/node, or, where
    the wheel leaves them out, written into `dest` by onnx's own generator (the model and data the
    `expect()` calls of its backend/test/case/node/lstm.py build, saved as its cmd_tools does)."""
    import onnx

    shipped = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    found = sorted(p for p in shipped.glob("test_lstm*") if (p / MODEL_FILE).is_file())
    return found or [_write_case(case, Path(dest)) for case in _lstm_cases()]


def _write_case(case, dest: Path) -> Path:
    folder = dest / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        data = folder / f"test_data_set_{i}"
        data.mkdir()
        for kind, values, infos in (("input", inputs, case.model.graph.input),
                                    ("output", outputs, case.model.graph.output)):
            _write_tensors(data, kind, zip([vi.name for vi in infos][:len(values)], values, strict=True))
    return folder


_CASES: list = []


def _lstm_cases() -> list:
    """onnx's LSTM node test cases, collected once: its collector appends to a module-level list each call."""
    if not _CASES:
        import warnings

        from onnx.backend.test.case.node import collect_testcases

        with warnings.catch_warnings():  # importing the other operators' cases warns of overflowing casts
            warnings.simplefilter("ignore")
            _CASES.extend(c for c in collect_testcases("LSTM") if c.name.startswith("test_lstm"))
    return _CASES


