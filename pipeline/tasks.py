"""Generated sequence tasks: the adding problem and two timing tasks after Gers, Schraudolph & Schmidhuber (2002).

Each generator returns x [N, L, F] float32 and y, with L = `window`. Samples are i.i.d., so the split is by
index (train first); inputs are already unit-scale, so normalization is the identity. docs/tasks.md
describes each task and its metric.
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.pipeline.config import DataConfig
from lstm_onnx.pipeline.dataset import Dataset, Normalization, Split


def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hochreiter & Schmidhuber (1997), in the form of Le et al. (2015).

    x[:, t, 0] ~ U(0, 1); x[:, t, 1] marks exactly two steps, one in each half of the sequence.
    y = the sum of the two marked values, [N, 1]. Always answering 1.0 scores MSE 1/6 (the variance of y).
    """
    if length < 2:
        raise ValueError(f"the adding problem needs window >= 2, got {length}")
    values = rng.uniform(0.0, 1.0, (n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    marks = np.zeros((n, length))
    rows = np.arange(n)
    marks[rows, first] = marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=2)
    y = (values[rows, first] + values[rows, second])[:, None]
    return x.astype(np.float32), y.astype(np.float32)


def spike_timing(n: int, length: int, period: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Generating timed spikes (GTS, Gers et al. 2002, sec. 4.2), cued by one start spike.

    Input x [N, L, 1] is zero except a start spike (1.0) at a step s ~ U{0, .., period-1}. The target
    y [N, L, 1] is 1.0 at s + period, s + 2*period, ... (inside the sequence) and 0.0 elsewhere: after the
    cue the input is silent, so the network must time every interval from its own state.
    """
    if length <= 2 * period:
        raise ValueError(f"spike_timing needs window > 2 * period so each sequence holds at least two "
                         f"target spikes; got window {length}, period {period}")
    start = rng.integers(0, period, n)
    t = np.arange(length)[None, :]
    since = t - start[:, None]
    x = (since == 0).astype(np.float32)[:, :, None]
    y = ((since > 0) & (since % period == 0)).astype(np.float32)[:, :, None]
    return x, y


def spike_delay(n: int, length: int, delays: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Measuring spike delays (MSD, Gers et al. 2002, sec. 4.1), as classification.

    Input x [N, L, 1] has two spikes, at t1 and t1 + d, with d = delays[k] for a class k drawn uniformly and
    t1 ~ U{0, .., L-1-d}; the rest is zero. The target is k (int64, [N]), read at the last step: the
    network must have measured the interval and hold the answer until the sequence ends.
    """
    if not delays or min(delays) < 1 or len(set(delays)) != len(delays):
        raise ValueError(f"spike_delay needs distinct positive delays, got {delays}")
    if max(delays) >= length:
        raise ValueError(f"spike_delay needs window > max(delays); got window {length}, delays {delays}")
    k = rng.integers(0, len(delays), n)
    d = np.asarray(delays)[k]
    t1 = (rng.uniform(0, 1, n) * (length - d)).astype(np.int64)  # U{0, .., L-1-d}
    x = np.zeros((n, length, 1), np.float32)
    rows = np.arange(n)
    x[rows, t1, 0] = x[rows, t1 + d, 0] = 1.0
    return x, k.astype(np.int64)


def generate(cfg: DataConfig, n: int, length: int, rng: np.random.Generator):
    """x, y, feature names and target names of `n` sequences of a generated task."""
    if cfg.task == "adding":
        x, y = adding_problem(n, length, rng)
        return x, y, ["value", "marker"], ["sum"]
    if cfg.task == "spike_timing":
        x, y = spike_timing(n, length, cfg.period, rng)
        return x, y, ["cue"], ["spike"]
    if cfg.task == "spike_delay":
        x, y = spike_delay(n, length, cfg.delays, rng)
        return x, y, ["spike"], [f"delay_{d}" for d in cfg.delays]
    raise ValueError(f"{cfg.task!r} is not a generated task")


def generated_dataset(cfg: DataConfig) -> Dataset:
    """Train and val: `window` steps long; test: `test_window` steps (default: the same)."""
    n = cfg.num_samples
    n_val, n_test = int(n * cfg.val_fraction), int(n * cfg.test_fraction)
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"num_samples {n} is too few to split into train/val/test")
    rng = np.random.default_rng(cfg.seed)
    x, y, features, targets = generate(cfg, n_train + n_val, cfg.window, rng)
    test = Split(*generate(cfg, n_test, cfg.test_window or cfg.window, rng)[:2])
    train, val = Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])
    num_targets = 0 if cfg.task == "spike_delay" else len(targets)  # classes carry no target statistics
    return Dataset(train, val, test, Normalization.identity(x.shape[2], num_targets), features, targets)
