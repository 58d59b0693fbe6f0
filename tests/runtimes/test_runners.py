import numpy as np
import onnx
import pytest

from lstm_onnx.exporters.export import export_checkpoint
from lstm_onnx.runtimes.base import RunnerError, RunnerUnavailable
from lstm_onnx.runtimes.onnx_reference import OnnxReferenceRunner, unsupported_features
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from tests.helpers import make_checkpoint


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    export_checkpoint(make_checkpoint(), path)
    return path


def test_runner_state_is_checked(model_path):
    runner = OnnxRuntimeRunner(model_path)
    with pytest.raises(RunnerError, match="not active"):
        runner.infer({"x": np.zeros((1, 2, 3), np.float32)})
    with runner:
        with pytest.raises(RunnerError, match="already active"):
            runner.activate()
        with pytest.raises(RunnerError, match=r"missing \['x'\]"):
            runner.infer({"input": np.zeros((1, 2, 3), np.float32)})
        out = runner.infer({"x": np.zeros((1, 2, 3), np.float32)})
    assert out["y"].shape == (1, 2) and len(runner.latencies_ms) == 1
    assert not runner.is_active


def test_missing_provider_lists_the_available_ones(model_path):
    with pytest.raises(RunnerUnavailable, match="available: cpu"):
        OnnxRuntimeRunner(model_path, provider="tensorrt").activate()
    with pytest.raises(RunnerError, match="unknown provider 'gpu'"):
        OnnxRuntimeRunner(model_path, provider="gpu").activate()


@pytest.mark.parametrize("attr", [dict(clip=1.0), dict(input_forget=1), dict(activations=["Sigmoid", "Tanh", "Tanh"])])
def test_onnx_reference_refuses_what_it_would_ignore(tmp_path, model_path, attr):
    model = onnx.load(model_path)
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    lstm.attribute.extend([onnx.helper.make_attribute(k, v) for k, v in attr.items()])
    assert unsupported_features(model)
    path = tmp_path / "attr.onnx"
    onnx.save(model, path)
    with pytest.raises(RunnerUnavailable, match="refused"):
        OnnxReferenceRunner(path).activate()


