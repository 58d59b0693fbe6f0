"""Checkpoints carry their config, load with weights_only=True, are written atomically; training is seeded."""
import subprocess
import sys

import pytest
import torch

from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.pipeline.checkpoint import CheckpointError, load_checkpoint
from lstm_onnx.pipeline.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lstm_onnx.pipeline.train import train


def tiny_config(seed=0):
    return RunConfig(ModelConfig(input_size=3, hidden_size=5, output_size=3),
                     DataConfig(num_features=3, window=6, length=200, seed=seed), TrainConfig(epochs=1, seed=seed))


def test_round_trip_and_reproducible(tmp_path):
    a = train(tiny_config(), tmp_path / "a.pt", progress=False, log=lambda *_: None)
    b = train(tiny_config(), tmp_path / "b.pt", progress=False, log=lambda *_: None)
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["config"]["model"]["hidden_size"] == 5
    loaded = load_checkpoint(tmp_path / "a.pt")
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(loaded.build_model()(x)[0], a.build_model()(x)[0])
    c = train(tiny_config(seed=1), None, progress=False, log=lambda *_: None)
    assert not torch.equal(c.state_dict["head.weight"], a.state_dict["head.weight"])


def test_damaged_checkpoint(tmp_path):
    good = train(tiny_config(), tmp_path / "a.pt", progress=False, log=lambda *_: None)
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["config"]["model"]["hidden_size"] = 7
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"foo": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an lstm-onnx-pipeline checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    assert good.metrics["test_loss"] > 0


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_python_dash_m_pipeline():
    res = subprocess.run([sys.executable, "-m", "lstm_onnx.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout
