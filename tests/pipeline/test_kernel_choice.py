"""The training kernel and thread count chosen by measurement, cached per machine and shape class."""
import json

import pytest
import torch

from lstm_onnx.pipeline import fastpath, kernel_choice


@pytest.fixture
def auto(monkeypatch, tmp_path):
    monkeypatch.setenv(kernel_choice.ENV, "auto")
    monkeypatch.setattr(kernel_choice, "cache_path", lambda: tmp_path / "kernel_choice.json")
    if not fastpath.available():
        pytest.skip(f"compiled LSTM kernel unavailable: {fastpath.unavailable_reason()}")
    return tmp_path / "kernel_choice.json"


def test_shape_class_rounds_up_to_powers_of_two():
    assert kernel_choice.shape_class(32, 16, 128) == "float32 B32 I16 H128"
    assert kernel_choice.shape_class(20, 10, 50) == "float32 B32 I16 H64"
    assert kernel_choice.shape_class(1, 1, 512, torch.float64) == "float64 B1 I1 H512"


def test_the_fastest_measured_pair_wins_and_is_cached(auto, monkeypatch):
    timings = {"compiled t1": 3.0, "python t1": 2.0, "compiled t2": 5.0, "python t2": 4.0}
    calls = []
    monkeypatch.setattr(kernel_choice, "measure_steps", lambda *a, **k: calls.append(a) or dict(timings))
    monkeypatch.setattr(kernel_choice.thread_policy, "usable_cores", lambda *a, **k: 2)
    first = kernel_choice.choose(8, 4, 16)
    assert (first.kernel, first.threads) == ("python", 1) and "measured" in first.reason
    again = kernel_choice.choose(8, 4, 16)
    assert (again.kernel, again.threads) == ("python", 1) and again.reason.startswith("cached")
    assert len(calls) == 1
    assert kernel_choice.choose(8, 4, 16, threads=2).kernel == "python" and len(calls) == 2  # another key
    assert len(json.loads(auto.read_text())) == 2


def test_overrides_and_unmeasured_ranks(auto, monkeypatch):
    monkeypatch.setattr(kernel_choice, "measure_steps", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setenv(kernel_choice.ENV, "python")
    assert kernel_choice.choose(8, 4, 16, threads=3) == kernel_choice.Choice("python", 3, "LSTM_PIPELINE_KERNEL=python")
    monkeypatch.setenv(kernel_choice.ENV, "compiled")
    assert kernel_choice.choose(8, 4, 16).kernel == "compiled"
    monkeypatch.setenv(kernel_choice.ENV, "auto")
    assert kernel_choice.choose(8, 4, 16, measure=False).kernel == "compiled"
    monkeypatch.setenv(kernel_choice.ENV, "fast")
    with pytest.raises(ValueError, match="compiled, python or auto"):
        kernel_choice.choose(8, 4, 16)


def test_measure_steps_times_both_kernels_and_restores_threads(auto):
    before = torch.get_num_threads()
    ms = kernel_choice.measure_steps(4, 3, 8, [1], runs=1)
    assert set(ms) == {"compiled t1", "python t1"} and all(v > 0 for v in ms.values())
    assert torch.get_num_threads() == before


def test_thread_counts():
    assert kernel_choice.thread_counts(1) == [1]
    assert kernel_choice.thread_counts(2) == [1, 2]
    assert kernel_choice.thread_counts(6) == [1, 2, 4, 6]


def test_train_runs_the_chosen_kernel_and_threads(auto, monkeypatch, tmp_path):
    """train routes its steps through what the measurement picked (a mutation that ignores it fails)."""
    from lstm_onnx.pipeline import cell
    from lstm_onnx.pipeline.config import RunConfig
    from lstm_onnx.pipeline.train import train

    monkeypatch.setattr(cell, "_compiled", [])
    used = []
    real = cell.PeepholeLayerFunction.apply
    monkeypatch.setattr(cell.PeepholeLayerFunction, "apply",
                        lambda *a: used.append(torch.get_num_threads()) or real(*a))
    monkeypatch.setattr(kernel_choice, "measure_steps",
                        lambda *a, **k: {"compiled t1": 2.0, "python t1": 1.0, "compiled t2": 3.0, "python t2": 4.0})
    monkeypatch.setattr(kernel_choice.thread_policy, "usable_cores", lambda *a, **k: 2)
    config = RunConfig()
    config.train.epochs = 1
    lines = []
    before = torch.get_num_threads()
    try:
        train(config, tmp_path / "m.pt", progress=False, log=lines.append)
    finally:
        torch.set_num_threads(before)
    assert cell._compiled == [None] and used and set(used) == {1}
    assert any(line.startswith("training step: python kernel, 1 thread(s); measured") for line in lines)
