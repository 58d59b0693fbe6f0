"""The python-backend repository writer: config.pbtxt parsed by Triton's own schema (tritonclient's
model_config_pb2), the files beside it, and the atomic replace. The real server run is test_triton_server.py."""
from __future__ import annotations

import numpy as np
import pytest

from lstm_onnx.serving.triton_options import TritonOptions
from lstm_onnx.serving.triton_python_repo import MODEL_SOURCE, write_python_repository
from tests import models

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc]")
from google.protobuf import text_format  # noqa: E402


def parsed(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def plain_model(ckpt, tmp_path_factory):
    return models.export(ckpt, tmp_path_factory.mktemp("m") / "plain.onnx")


def test_stateless_model_gets_the_dynamic_batcher(plain_model, tmp_path):
    options = TritonOptions(name="plain", backend="python", max_batch_size=32, preferred_batch_sizes=(8, 16),
                            max_queue_delay_us=700, max_queue_size=99, instance_count=3)
    folder = write_python_repository(plain_model, tmp_path, options)
    cfg = parsed(folder)
    assert folder == tmp_path / "plain" and cfg.name == "plain" and cfg.backend == "python"
    assert cfg.max_batch_size == 32 and not cfg.HasField("sequence_batching")
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("x", [-1, models.F])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("y", [models.O])]
    batcher = cfg.dynamic_batching
    assert list(batcher.preferred_batch_size) == [8, 16] and batcher.max_queue_delay_microseconds == 700
    assert batcher.default_queue_policy.max_queue_size == 99
    assert cfg.instance_group[0].count == 3 and cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (folder / "1" / "model.py").read_bytes() == MODEL_SOURCE.read_bytes()
    assert (folder / "1" / "model.onnx").read_bytes() == plain_model.read_bytes()


def test_stateful_model_gets_the_sequence_batcher_and_its_controls(serve_model, tmp_path):
    options = TritonOptions(name="s", backend="python", max_candidate_sequences=5, max_sequence_idle_us=1234)
    cfg = parsed(write_python_repository(serve_model, tmp_path, options))
    seq = cfg.sequence_batching
    assert seq.max_sequence_idle_microseconds == 1234 and seq.oldest.max_candidate_sequences == 5
    kinds = {c.name: c.control[0].kind for c in seq.control_input}
    kind = model_config_pb2.ModelSequenceBatching.Control
    assert kinds == {"START": kind.CONTROL_SEQUENCE_START, "END": kind.CONTROL_SEQUENCE_END,
                     "CORRID": kind.CONTROL_SEQUENCE_CORRID}
    assert [(i.name, i.optional) for i in cfg.input] == [("x", False), ("lengths", True)]
    assert {p: v.string_value for p, v in cfg.parameters.items()}["streams"] == "true"


def test_served_statelessly_on_request(serve_model, tmp_path):
    cfg = parsed(write_python_repository(serve_model, tmp_path, TritonOptions(backend="python"), streams=False))
    assert cfg.HasField("dynamic_batching") and not cfg.HasField("sequence_batching")


def test_rewrite_replaces_the_folder_whole(plain_model, serve_model, tmp_path):
    write_python_repository(serve_model, tmp_path, TritonOptions(name="m", backend="python"))
    (tmp_path / "m" / "1" / "stale.txt").write_text("old")
    write_python_repository(plain_model, tmp_path, TritonOptions(name="m", backend="python"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old folder left
    assert not (tmp_path / "m" / "1" / "stale.txt").exists()
    assert not parsed(tmp_path / "m").HasField("sequence_batching")


@pytest.mark.parametrize("options, streams, match", [
    (TritonOptions(name="bad name!"), None, "model name"),
    (TritonOptions(max_batch_size=0), None, "max batch size"),
    (TritonOptions(), True, "export it with --stateful"),
])
def test_bad_settings_are_one_line_errors(plain_model, tmp_path, options, streams, match):
    with pytest.raises(ValueError, match=match):
        write_python_repository(plain_model, tmp_path, options, streams=streams)
    assert list(tmp_path.iterdir()) == []


def test_external_weights_are_embedded(plain_model, tmp_path):
    """Only model.onnx goes into the repository: weights in a file beside the export must come with it."""
    import onnx

    from lstm_onnx.runtimes.embed import Predictor

    source = tmp_path / "ext" / "model.onnx"
    source.parent.mkdir()
    onnx.save(onnx.load(str(plain_model)), source, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=300)
    folder = write_python_repository(source, tmp_path / "repo", TritonOptions(backend="python"))
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "model.py"]
    x = np.stack(models.raw_inputs(np.random.default_rng(5), [6, 6]))
    np.testing.assert_array_equal(Predictor.load(folder / "1" / "model.onnx").predict(x),
                                  Predictor.load(plain_model).predict(x))


def test_gpu_instances_refuse_a_native_lstm_with_p(plain_model, tmp_path):
    """model.py runs the export unchanged: under ORT's CUDA provider its LSTM with P would run on the CPU."""
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    gpu = TritonOptions(backend="python", instance_kind="gpu", gpus=(1,))
    with pytest.raises(ValueError, match="--form auto --target ort-cuda"):
        write_python_repository(plain_model, tmp_path / "refused", gpu)
    assert not (tmp_path / "refused").exists()
    ready = tmp_path / "cuda.onnx"
    export_checkpoint(models.checkpoint(), ready, ExportOptions(form="auto", target="ort-cuda"))
    group = parsed(write_python_repository(ready, tmp_path / "repo", gpu)).instance_group[0]
    assert (group.kind, list(group.gpus)) == (model_config_pb2.ModelInstanceGroup.KIND_GPU, [1])


def test_not_a_model_is_a_one_line_error(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="junk.onnx"):
        write_python_repository(tmp_path / "junk.onnx", tmp_path / "repo", TritonOptions())
    with pytest.raises(ValueError, match="no such model file"):
        write_python_repository(tmp_path / "absent.onnx", tmp_path / "repo", TritonOptions())
