"""Training: resume equals an uninterrupted run, early stopping, LR schedule, size checks, task metrics."""
import numpy as np
import pytest
import torch

from lstm_onnx.pipeline.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lstm_onnx.pipeline.metrics import regression_metrics, spike_metrics
from lstm_onnx.pipeline.train import ResumeError, predict, state_path, train


def small(**train_kw) -> RunConfig:
    return RunConfig(
        model=ModelConfig(input_size=3, hidden_size=8, output_size=3, head_dropout=0.2),
        data=DataConfig(num_features=3, window=12, length=400),
        train=TrainConfig(**{"epochs": 3, "batch_size": 32, **train_kw}))


def quiet(*_):
    pass


class Interrupt(Exception):
    pass


def interrupt_after(epoch: int):
    def log(line: str) -> None:
        if line.startswith(f"epoch {epoch + 1:3d}"):
            raise Interrupt  # epoch+1 finished but its state is not saved yet: as if killed right there
    return log


def test_resume_equals_uninterrupted(tmp_path):
    straight = train(small(schedule="cosine"), tmp_path / "a.pt", progress=False, log=quiet)
    with pytest.raises(Interrupt):
        train(small(schedule="cosine"), tmp_path / "b.pt", progress=False, log=interrupt_after(2))
    assert not (tmp_path / "b.pt").exists()
    resumed = train(small(schedule="cosine"), tmp_path / "b.pt", progress=False, log=quiet,
                    resume=state_path(tmp_path / "b.pt"))
    assert resumed.metrics["epochs_run"] == 3
    for k, v in straight.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v, rtol=0, atol=0)
    assert resumed.metrics["history"] == straight.metrics["history"]


def test_resume_refuses_another_model(tmp_path):
    train(small(), tmp_path / "m.pt", progress=False, log=quiet)
    other = small()
    other.model.hidden_size = 9
    with pytest.raises(ResumeError, match="different model or data config"):
        train(other, tmp_path / "m.pt", progress=False, log=quiet, resume=state_path(tmp_path / "m.pt"))
    with pytest.raises(ResumeError, match="no training state"):
        train(small(), None, progress=False, log=quiet, resume=tmp_path / "none.state")


def test_early_stopping_and_best_weights():
    # lr so small that validation never improves by min_delta after the first epoch
    ckpt = train(small(epochs=20, patience=2, lr=1e-9, min_delta=1e-3), None, progress=False, log=quiet)
    m = ckpt.metrics
    assert m["stopped_early"] and m["epochs_run"] == 3 and m["best_epoch"] == 1


def test_cosine_schedule_lowers_lr():
    ckpt = train(small(epochs=4, schedule="cosine", lr=1e-2, min_lr_factor=0.1), None, progress=False, log=quiet)
    lrs = [h["lr"] for h in ckpt.metrics["history"]]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    expected = 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + np.cos(np.pi * 3 / 4))
    assert lrs[3] == pytest.approx(expected, rel=1e-6)


def test_threads_are_applied():
    before = torch.get_num_threads()
    try:
        train(small(epochs=1, threads=1), None, progress=False, log=quiet)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_size_mismatch_is_a_clear_error():
    config = small()
    config.model.input_size = 4
    with pytest.raises(ValueError, match="model.input_size is 4 but the data has 3"):
        train(config, None, progress=False, log=quiet)
    config = RunConfig(model=ModelConfig(input_size=1, output_size=1, head="last"),
                       data=DataConfig(task="spike_timing", window=30, period=5, num_samples=40))
    with pytest.raises(ValueError, match="model.head must be sequence"):
        train(config, None, progress=False, log=quiet)


def test_classification_metrics_match_the_model():
    config = RunConfig(model=ModelConfig(input_size=1, hidden_size=8, head="classify", output_size=2),
                       data=DataConfig(task="spike_delay", window=20, delays=[4, 9], num_samples=200),
                       train=TrainConfig(epochs=2))
    ckpt = train(config, None, progress=False, log=quiet)
    from lstm_onnx.pipeline.data import load_dataset

    data = load_dataset(config.data)
    logits = predict(ckpt.build_model(), data.test.x)
    assert ckpt.metrics["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == data.test.y))


def test_regression_metrics_by_hand():
    pred, true = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.0, 0.0], [0.0, 5.0]])
    m = regression_metrics(pred, true, ["a", "b"])
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 9) / 4)) and m["mae"] == pytest.approx(5 / 4)
    assert m["per_target"]["a"]["rmse"] == pytest.approx(np.sqrt(9 / 2))


def test_spike_metrics_demand_exact_timing():
    true = np.zeros((2, 10, 1))
    true[:, [3, 7], 0] = 1
    pred = true * 0.9
    assert spike_metrics(pred, true)["sequence_accuracy"] == 1.0
    late = pred.copy()
    late[1, 7, 0], late[1, 8, 0] = 0.0, 0.9  # one spike a step late: that sequence fails
    m = spike_metrics(late, true)
    assert m["sequence_accuracy"] == 0.5 and m["spike_recall"] == 0.75 and m["false_spikes"] == 0.5
