"""The generated tasks, checked sample by sample against their definitions (docs/tasks.md)."""
import numpy as np
import pytest

from lstm_onnx.pipeline.config import DataConfig
from lstm_onnx.pipeline.data import load_dataset
from lstm_onnx.pipeline.tasks import adding_problem, spike_delay, spike_timing


def test_adding_problem_definition():
    x, y = adding_problem(200, 30, np.random.default_rng(0))
    assert x.shape == (200, 30, 2) and y.shape == (200, 1)
    for n in range(200):
        marked = np.flatnonzero(x[n, :, 1])
        assert len(marked) == 2 and marked[0] < 15 <= marked[1]
        assert y[n, 0] == pytest.approx(x[n, marked, 0].sum(), abs=1e-6)
    assert 0 <= x[:, :, 0].min() and x[:, :, 0].max() < 1


def test_spike_timing_definition():
    period, length = 7, 40
    x, y = spike_timing(100, length, period, np.random.default_rng(1))
    assert x.shape == y.shape == (100, length, 1)
    for n in range(100):
        (s,) = np.flatnonzero(x[n, :, 0])
        assert 0 <= s < period
        expected = [t for t in range(length) if t > s and (t - s) % period == 0]
        assert list(np.flatnonzero(y[n, :, 0])) == expected and len(expected) >= 2


def test_spike_delay_definition():
    delays = [5, 9, 12]
    x, k = spike_delay(300, 20, delays, np.random.default_rng(2))
    assert k.dtype == np.int64 and set(k) == {0, 1, 2}
    for n in range(300):
        t1, t2 = np.flatnonzero(x[n, :, 0])
        assert t2 - t1 == delays[k[n]]
    # the first spike's position varies within a class, so the sequence start does not give the answer away
    assert len({int(np.flatnonzero(x[n, :, 0])[0]) for n in np.flatnonzero(k == 0)}) > 5


@pytest.mark.parametrize("kw, match", [
    (dict(task="spike_timing", window=40, period=20), "window > 2 \\* period"),
    (dict(task="spike_delay", window=30, delays=[10, 30]), "window > max\\(delays\\)"),
    (dict(task="spike_delay", window=30, delays=[10, 10]), "distinct"),
    (dict(task="adding", window=1), "window >= 2"),
])
def test_bad_task_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(DataConfig(num_samples=50, **kw))


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="task must be one of"):
        DataConfig(task="sine")


def test_generated_split_and_identity_normalization():
    cfg = DataConfig(task="spike_delay", window=50, delays=[10, 20], num_samples=100, seed=4)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert (len(a.train.x), len(a.val.x), len(a.test.x)) == (70, 15, 15)
    np.testing.assert_array_equal(a.test.x, b.test.x)  # same seed, same data
    assert a.normalization.target_mean.size == 0 and np.all(a.normalization.input_std == 1)
    assert a.target_names == ["delay_10", "delay_20"]
    other = load_dataset(DataConfig(task="spike_delay", window=50, delays=[10, 20], num_samples=100, seed=5))
    assert not np.array_equal(a.test.x, other.test.x)
