"""A Triton model repository for the python backend: our model.py (serving/triton_python_model.py) running the
exported model under onnxruntime, as raw-in/raw-out as `lstm-pipeline serve`.

    <out>/<name>/config.pbtxt      backend "python"; batch-first tensors, the batch dim being Triton's
    <out>/<name>/1/model.py        the copy of triton_python_model.py
    <out>/<name>/1/model.onnx      the copy of the exported model, unchanged

A stateless model gets the dynamic batcher; one with h0/c0 gets the sequence batcher (`oldest`) with the
START/END/CORRID controls, and model.py keeps each sequence's h/c. `streams=False` serves a stateful export
statelessly (every request from zero state), as our server's /v1/predict does.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lstm_onnx.core.fileio import current_umask, replace_folder
from lstm_onnx.serving.triton_config import Token, dynamic_batching, instance_group, oldest, render
from lstm_onnx.serving.triton_options import TritonOptions

MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")


def model_io(model_path) -> dict:
    """What config.pbtxt needs from the model: features, outputs, sequence head, lengths, h0/c0."""
    from lstm_onnx.runtimes.embed import Predictor, PredictorError
    from lstm_onnx.runtimes.model_metadata import MetadataError, require_export

    try:
        pred = Predictor.load(str(model_path), warn=False)
        require_export(pred.meta, model_path)
    except (PredictorError, MetadataError) as exc:
        raise ValueError(str(exc)) from None
    if any(d is not None for d in pred.fixed):
        raise ValueError(f"{model_path} is an unrolled export (fixed batch/sequence sizes); Triton batches "
                         f"along the batch axis: export with --form native")
    y = next(o for o in pred.session.get_outputs() if o.name == "y")
    outputs = y.shape[-1] if isinstance(y.shape[-1], int) else -1
    return {"features": pred.num_features, "outputs": outputs, "sequence_head": pred.head == "sequence",
            "lengths": pred.has_lengths, "stateful": pred.stateful}


def config_text(options: TritonOptions, io: dict, streams: bool, threads: int = 1) -> str:
    inputs = [[("name", "x"), ("data_type", Token("TYPE_FP32")), ("dims", [-1, io["features"]]),
               ("allow_ragged_batch", True)]]
    if io["lengths"]:
        inputs.append([("name", "lengths"), ("data_type", Token("TYPE_INT32")), ("dims", [1]), ("optional", True)])
    y_dims = [-1, io["outputs"]] if io["sequence_head"] else [io["outputs"]]
    parameters = [[("key", key), ("value", [("string_value", value)])]
                  for key, value in (("streams", "true" if streams else "false"), ("intra_op_threads", str(threads)))]
    fields = [("name", options.name), ("backend", "python"), ("max_batch_size", options.max_batch_size),
              ("input", inputs), ("output", [[("name", "y"), ("data_type", Token("TYPE_FP32")), ("dims", y_dims)]]),
              ("sequence_batching", _sequence(options)) if streams else ("dynamic_batching", dynamic_batching(options)),
              ("instance_group", [instance_group(options)]), ("parameters", parameters)]
    return render(fields)


def _sequence(options: TritonOptions) -> list:
    """No implicit state (model.py keeps h/c per CORRID), so START/END/CORRID rather than START/READY."""
    flag = [("int32_false_true", [0, 1])]
    controls = [[("name", name), ("control", [[("kind", Token(kind)), *value]])]
                for name, kind, value in (("START", "CONTROL_SEQUENCE_START", flag),
                                          ("END", "CONTROL_SEQUENCE_END", flag),
                                          ("CORRID", "CONTROL_SEQUENCE_CORRID",
                                           [("data_type", Token("TYPE_UINT64"))]))]
    return [("max_sequence_idle_microseconds", options.max_sequence_idle_us), ("oldest", oldest(options)),
            ("control_input", controls)]


def write_python_repository(model_path, out, options: TritonOptions, *, streams: bool | None = None,
                            threads: int = 1) -> Path:
    """Write <out>/<options.name>/ (config.pbtxt, 1/model.py, 1/model.onnx); return that folder.

    `streams`: None serves a model with h0/c0 as streams (sequence batching), False statelessly.
    `threads`: onnxruntime intra-op threads per instance. The folder appears whole or not at all: it is built
    beside its place and renamed over any old one.
    """
    problems = options.problems()
    if problems:
        raise ValueError("; ".join(problems))
    if not Path(model_path).is_file():
        raise ValueError(f"{model_path}: no such model file")
    io = model_io(model_path)
    if options.instance_kind == "gpu":
        _check_gpu(model_path)
    streams = io["stateful"] if streams is None else streams
    if streams and not io["stateful"]:
        raise ValueError(f"{model_path} has no h0/c0 inputs: export it with --stateful to serve streams")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    target = root / options.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{options.name}.", suffix=".tmp", dir=root))
    try:
        (tmp / "1").mkdir()
        (tmp / "config.pbtxt").write_text(config_text(options, io, streams, threads))
        shutil.copyfile(MODEL_SOURCE, tmp / "1" / "model.py")
        _copy_model(model_path, tmp / "1" / "model.onnx")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide it from another user's server
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _copy_model(model_path, dest: Path) -> None:
    """The export, as one file: only model.onnx goes into the repository, so weights kept in external data
    files beside it (as `onnx.save(..., save_as_external_data=True)` writes them) are embedded."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        shutil.copyfile(model_path, dest)
        return
    onnx.load_external_data_for_model(model, str(Path(model_path).parent))
    dest.write_bytes(model.SerializeToString())


def _check_gpu(model_path) -> None:
    """model.py runs the export unchanged under ORT's CUDA provider, which runs a native LSTM with P on the CPU."""
    import onnx

    from lstm_onnx.serving.triton_graph import has_peepholes, refuse_gpu_peepholes

    refuse_gpu_peepholes("gpu", has_peepholes(onnx.load(str(model_path), load_external_data=False)), str(model_path))


