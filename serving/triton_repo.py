"""A Triton model repository for the ONNX Runtime backend: REPO/<name>/config.pbtxt + REPO/<name>/1/model.onnx.

    from lstm_onnx.serving.triton_repo import write_onnx_repository
    write_onnx_repository("model.onnx", "repo", TritonOptions(max_batch_size=32))

The repository is built in a temp folder beside REPO and renamed into place. `ImplicitStateDriver` plays
Triton's part for a stateful model (state per correlation id, zeros at a sequence's start), which is how the
tests check the implicit-state contract without a tritonserver binary.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lstm_onnx.core.fileio import ArtifactWriteError, current_umask, replace_folder
from lstm_onnx.serving.triton_config import config_text
from lstm_onnx.serving.triton_graph import (
    CONTROLS,
    STATES,
    TritonModelError,
    check_equivalent,
    refuse_gpu_peepholes,
    triton_model,
)
from lstm_onnx.serving.triton_options import TritonOptions

VERSION = "1"


class RepositoryError(ValueError):
    """Options or a model the repository cannot be made from; one line saying what to change."""


def write_onnx_repository(model_path, out, options: TritonOptions, force: bool = False) -> list[Path]:
    """Write the repository; returns the files written (under `out`). Raises RepositoryError."""
    problems = options.problems()
    if problems:
        raise RepositoryError("; ".join(problems))
    try:
        model, spec = triton_model(model_path)
        refuse_gpu_peepholes(options.instance_kind, spec.peepholes)
        check_equivalent(model_path, model, spec)
    except TritonModelError as exc:
        raise RepositoryError(str(exc)) from None
    text = config_text(options, spec)
    with atomic_repository(out, force) as staging:
        folder = staging / options.name
        (folder / VERSION).mkdir(parents=True)
        (folder / "config.pbtxt").write_text(text)
        (folder / VERSION / "model.onnx").write_bytes(model.SerializeToString())
    return [Path(out) / options.name / "config.pbtxt", Path(out) / options.name / VERSION / "model.onnx"]


@contextmanager
def atomic_repository(out, force: bool = False):
    """Yield a fresh path to build the repository at; on success it replaces `out` (refused if `out` holds
    anything, unless `force`); on error nothing at `out` changes. The build happens beside `out` (same file
    system), so the final step is a rename."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RepositoryError(f"{out} is a file; pass a folder for the repository")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RepositoryError(f"{out} is not empty; pass --force to replace it")
        if not is_repository(out):  # --force replaces a repository, not any folder (`-o .` by mistake)
            raise RepositoryError(f"{out} holds more than Triton model folders (<name>/config.pbtxt); --force "
                                  "replaces only a model repository: remove it yourself or choose another folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise ArtifactWriteError(out, exc) from exc
    try:
        yield staging / "repo"
        built = staging / "repo"
        for folder in (built, *(p for p in built.rglob("*") if p.is_dir())):
            os.chmod(folder, 0o777 & ~current_umask())  # a writer's mkdtemp leaves 0700: unreadable to a server
        replace_folder(built, out)
    except OSError as exc:
        raise ArtifactWriteError(out, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_repository(folder: Path) -> bool:
    """Every entry a model folder with a config.pbtxt, as this generator writes them."""
    return all(p.is_dir() and (p / "config.pbtxt").is_file() for p in folder.iterdir())


class ImplicitStateDriver:
    """Triton's sequence batcher with implicit state, played in-process over the repository's model.onnx.

    Each round is a batch the `oldest` strategy could form: requests of distinct sequences with equal steps.
    A request that starts its sequence gets START=1 and the zero initial_state; every other one gets START=0 and
    the hn/cn that its sequence's previous request returned. Every request has READY=1. A round may also hold
    idle slots: sequences in progress without a request (READY=0, the `direct` strategy's empty slots), fed a
    copy of the first request's inputs; the driver keeps whatever state the model returns for every slot, so a
    model that ignored READY would advance an idle sequence. `stale_start` hands a starting request the state
    its id last held (ones for a new id) instead of zeros: the model's START must zero it. Other inputs (x,
    lengths) are passed as the request gives them.
    """

    def __init__(self, model_path, stale_start: bool = False):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        # (input, output, dims without batch), as config.pbtxt's sequence_batching.state lists them
        self.states = [(h_in, h_out, tuple(shapes[h_in][1:])) for h_in, h_out in STATES if h_in in shapes]
        self.controls = {name for name, _ in CONTROLS if name in shapes}
        self.stale_start = stale_start
        self.state: dict[object, dict[str, np.ndarray]] = {}

    def run_round(self, requests: list[tuple[object, bool, dict[str, np.ndarray]]], idle: tuple = ()) -> list[dict]:
        """requests: (correlation id, sequence start?, inputs with batch 1); idle: ids of sequences in progress
        that hold a slot without a request. Returns each request's outputs."""
        ids = [cid for cid, _, _ in requests] + list(idle)
        if len(set(ids)) != len(ids):
            raise ValueError(f"a batch holds at most one slot per sequence, got ids {ids}")
        missing = [cid for cid, start, _ in requests if not start and cid not in self.state]
        missing += [cid for cid in idle if cid not in self.state]
        if missing:
            raise ValueError(f"sequences {missing} were never started: send their first request with start=True")
        slots = [(cid, start, inputs, 1) for cid, start, inputs in requests]
        slots += [(cid, False, requests[0][2], 0) for cid in idle]
        feeds = {name: np.concatenate([inputs[name] for _, _, inputs, _ in slots]) for name in requests[0][2]}
        for h_in, h_out, dims in self.states:
            feeds[h_in] = np.concatenate([self._state_in(cid, start, h_out, dims) for cid, start, _, _ in slots])
        if self.controls:
            feeds["START"] = np.array([[int(start)] for _, start, _, _ in slots], np.int32)
            feeds["READY"] = np.array([[ready] for *_, ready in slots], np.int32)
        names = [o.name for o in self.session.get_outputs()]
        out = dict(zip(names, self.session.run(None, feeds)))
        results = []
        for row, (cid, _, _, ready) in enumerate(slots):
            item = {name: value[row:row + 1] for name, value in out.items()}
            self.state[cid] = {h_out: item[h_out] for _, h_out, _ in self.states}
            if ready:
                results.append(item)
        return results

    def _state_in(self, cid, start: bool, h_out: str, dims: tuple) -> np.ndarray:
        if not start:
            return self.state[cid][h_out]
        if self.stale_start:
            return self.state.get(cid, {}).get(h_out, np.ones((1, *dims), np.float32))
        return np.zeros((1, *dims), np.float32)  # config.pbtxt's initial_state: zero_data
