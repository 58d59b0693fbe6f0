"""verify's saved arrays: feeds and outputs as .npz or Polygraphy JSON (by suffix), and the baselines made of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_onnx.runtimes.base import Runner, error_message


class ExpectedArrays(Runner):
    """The baseline as saved outputs (a file read once, or a test data set's: runtimes/verify_data_sets.py),
    returned whatever the feeds."""

    name = "expected"

    def __init__(self, outputs: dict[str, np.ndarray], input_names: list[str], name: str | None = None):
        super().__init__()
        self._outputs, self._inputs = dict(outputs), list(input_names)
        self.name = name or self.name

    def _input_names(self):
        return self._inputs

    def _infer(self, feeds):
        return dict(self._outputs)


MAX_NPZ_BYTES = 256 << 20  # what an .npz may inflate to; verify's feeds and outputs are far smaller


def load_npz(path, what: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz, one line (ValueError) if it is none, is damaged, or would inflate past
    MAX_NPZ_BYTES: each member's size is read from its header before any of it is inflated."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            damaged = fh.read(4) == b"PK\x03\x04"  # a zip's start without its end: cut short
        raise ValueError(f"{path} is not a readable .npz of {what}: truncated or damaged" if damaged else
                         f"{path} is not an .npz (a zip of arrays, as np.savez writes) of {what}")
    try:
        size = _inflated_size(path)
        if size > MAX_NPZ_BYTES:
            raise ValueError(f"{path}: the {what} would inflate to {size / 2**30:.2f} GiB; an .npz may hold "
                             f"at most {MAX_NPZ_BYTES >> 20} MiB") from None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # a damaged zip or .npy header: BadZipFile, zlib.error, EOFError, TokenError, ...
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path} is not a readable .npz of {what}: {error_message(exc)}") from None


def _inflated_size(path: Path) -> int:
    """Bytes the members inflate to: an array's from its .npy header (what np.load allocates), another
    member's from the zip directory."""
    import zipfile

    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            size = info.file_size
            if info.filename.endswith(".npy"):
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            total += size
    return total


def read_feeds_file(path) -> dict[str, np.ndarray]:
    """Feeds from an .npz, or from Polygraphy's `run --save-inputs X.json` (its first iteration)."""
    if Path(path).suffix.lower() == ".json":
        from lstm_onnx.runtimes.polygraphy_io import read_inputs_json

        return read_inputs_json(path)
    return load_npz(path, "inputs")


def read_outputs_file(path) -> dict[str, np.ndarray]:
    """Saved outputs from an .npz, or from Polygraphy's `run --save-outputs X.json` (one runner's first
    iteration, matching the first iteration of its --save-inputs)."""
    if Path(path).suffix.lower() != ".json":
        return load_npz(path, "expected outputs")
    from lstm_onnx.runtimes.polygraphy_io import read_outputs_json

    results = read_outputs_json(path)
    if len(results) > 1:
        raise ValueError(f"{path} holds the outputs of {len(results)} runners ({', '.join(results)}); save one "
                         f"runner's (polygraphy run MODEL --onnxrt --save-outputs X.json)")
    (iterations,) = results.values()
    if not iterations:
        raise ValueError(f"{path}: runner {next(iter(results))!r} has no iterations")
    return iterations[0]


def write_feeds_file(path, feeds: dict[str, np.ndarray]) -> None:
    """An .npz, or for X.json what Polygraphy's `run --load-inputs` reads."""
    if Path(path).suffix.lower() == ".json":
        from lstm_onnx.runtimes.polygraphy_io import write_inputs_json

        return write_inputs_json(path, feeds)
    save_npz(path, feeds)


def write_outputs_file(path, runner: str, outputs: dict[str, np.ndarray]) -> None:
    """An .npz, or for X.json Polygraphy RunResults, which `polygraphy run --load-outputs` compares with."""
    if Path(path).suffix.lower() == ".json":
        from lstm_onnx.runtimes.polygraphy_io import write_outputs_json

        return write_outputs_json(path, runner, outputs)
    save_npz(path, outputs)


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    from lstm_onnx.core.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
