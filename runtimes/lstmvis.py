"""The probe's traces as LSTMVis input (Strobelt et al. 2017; github.com/HendrikStrobelt/LSTMVis), h5py lazily.

LSTMVis reads one HDF5 of state matrices [tokens, units], one HDF5 of word ids [tokens], a dictionary of
`word id` lines, and an lstm.yml naming them. A time series has no words: each token is a step, its word
`t<k>` the step's index within its sequence; the sequences of the batch follow one another.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_onnx.core.fileio import ArtifactWriteError, atomic_path
from lstm_onnx.runtimes.gate_stats import group


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ValueError("--lstmvis needs h5py: pip install 'lstm-onnx-pipeline[lstmvis]'") from None
    return h5py


def _tokens(value: np.ndarray) -> np.ndarray:
    """[seq, batch, H] -> [batch*seq, H], sequence after sequence."""
    return np.ascontiguousarray(value.transpose(1, 0, 2).reshape(-1, value.shape[-1]))


def write_lstmvis(traces: dict[str, np.ndarray], folder: Path) -> list[Path]:
    """states.h5 (cell and h, plus i/f/o, per layer and direction), words.h5, words.dict, lstm.yml."""
    h5py = _h5py()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactWriteError(folder, exc) from None
    grouped = group(traces)
    types = []
    with atomic_path(folder / "states.h5") as tmp:
        with h5py.File(tmp, "w", locking=False) as f:  # atomic_path holds the lock
            for k, ((layer, d), t) in enumerate(grouped.items()):
                tag = f"l{layer}_d{d}"
                h = t["o"] * np.tanh(t["c"])
                for kind, name, value in (("state", f"cell_{tag}", t["c"]), ("output", f"h_{tag}", h),
                                          *(("gate", f"{g}_{tag}", t[g]) for g in ("i", "f", "o"))):
                    f.create_dataset(name, data=_tokens(value).astype(np.float32))
                    if kind != "gate":
                        types.append(f"    {{type: {kind}, layer: {k + 1}, path: {name}}}")
            steps, batch = next(iter(grouped.values()))["c"].shape[:2]
    with atomic_path(folder / "words.h5") as tmp:
        with h5py.File(tmp, "w", locking=False) as f:  # atomic_path holds the lock
            f.create_dataset("words", data=np.tile(np.arange(steps, dtype=np.int64), batch))
    with atomic_path(folder / "words.dict") as tmp:
        tmp.write_text("".join(f"t{k} {k}\n" for k in range(steps)))
    config = ("name: lstm-onnx-pipeline gate traces\ndescription: cell and h per layer (layer k: probe l/d pair "
              "k-1); datasets i_*, f_*, o_* hold the gates\nfiles:\n  states: states.h5\n  words: words.h5\n"
              "  words_dict: words.dict\nword_sequence:\n  file: words\n  path: words\n  dict_file: words_dict\n"
              "states:\n  file: states\n  types: [\n" + ",\n".join(types) + "\n  ]\n")
    with atomic_path(folder / "lstm.yml") as tmp:
        tmp.write_text(config)
    return [folder / n for n in ("states.h5", "words.h5", "words.dict", "lstm.yml")]
