"""Tasks and windows: the built-in synthetic forecasting task, splits by time, normalization from train."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import DataConfig


@dataclass
class Normalization:
    """Per-feature affine normalization, fitted on the training split only."""

    input_mean: np.ndarray
    input_std: np.ndarray
    target_mean: np.ndarray
    target_std: np.ndarray

    @classmethod
    def fit(cls, series: np.ndarray, target_cols: list[int]) -> "Normalization":
        mean, std = series.mean(0), series.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        return cls(mean, std, mean[target_cols], std[target_cols])

    def to_dict(self) -> dict:
        return {k: [float(v) for v in getattr(self, k)] for k in
                ("input_mean", "input_std", "target_mean", "target_std")}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(*(np.asarray(d[k], dtype=np.float32) for k in
                     ("input_mean", "input_std", "target_mean", "target_std")))


@dataclass
class Split:
    x: np.ndarray  # [N, window, F] float32, normalized
    y: np.ndarray  # [N, T] float32, normalized


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    normalization: Normalization
    feature_names: list[str]
    target_names: list[str]


def synthetic_series(cfg: DataConfig) -> np.ndarray:
    """A multivariate series [length, F]: coupled oscillators with drifting phase and noise.

    Feature k is a sum of two sinusoids of its own periods, plus a lagged, damped copy of feature k-1
    (so the features carry information about each other), plus Gaussian noise of scale `noise`.
    """
    rng = np.random.default_rng(cfg.seed)
    t = np.arange(cfg.length, dtype=np.float64)[:, None]
    F = cfg.num_features
    p1, p2 = rng.uniform(12, 60, F), rng.uniform(80, 300, F)
    a1, a2 = rng.uniform(0.5, 1.5, F), rng.uniform(0.2, 0.8, F)
    phase = rng.uniform(0, 2 * np.pi, (2, F))
    base = a1 * np.sin(2 * np.pi * t / p1 + phase[0]) + a2 * np.sin(2 * np.pi * t / p2 + phase[1])
    coupled = base + 0.5 * np.roll(np.roll(base, 1, axis=1), 3, axis=0)
    return (coupled + cfg.noise * rng.standard_normal(coupled.shape)).astype(np.float32)


def windows(series: np.ndarray, target_cols: list[int], window: int, horizon: int, stride: int):
    """Inputs [N, window, F] and targets [N, T]: the target columns `horizon` steps after each window."""
    starts = np.arange(0, len(series) - window - horizon + 1, stride)
    if len(starts) == 0:
        raise ValueError(f"series of {len(series)} steps is too short for window {window} + horizon {horizon}")
    idx = starts[:, None] + np.arange(window)[None, :]
    x = series[idx]
    y = series[starts + window + horizon - 1][:, target_cols]
    return x.astype(np.float32), y.astype(np.float32)


def split_by_time(series: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test segments in time order; val and test keep `window` steps of context."""
    n = len(series)
    n_test, n_val = int(n * cfg.test_fraction), int(n * cfg.val_fraction)
    n_train = n - n_val - n_test
    ctx = cfg.window + cfg.horizon - 1
    if min(n_train, n_val, n_test) <= ctx:
        raise ValueError(f"{n} steps are too few to split into train/val/test with window {cfg.window}")
    return (series[:n_train], series[n_train - ctx:n_train + n_val],
            series[n_train + n_val - ctx:])


def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.task != "synthetic":
        raise ValueError(f"unknown task {cfg.task!r}; known: synthetic")
    series = synthetic_series(cfg)
    names = [f"f{k}" for k in range(series.shape[1])]
    return build_dataset(series, names, names, cfg)


def build_dataset(series: np.ndarray, feature_names: list[str], target_names: list[str],
                  cfg: DataConfig) -> Dataset:
    target_cols = [feature_names.index(n) for n in target_names]
    train_s, val_s, test_s = split_by_time(series, cfg)
    norm = Normalization.fit(train_s, target_cols)

    def make(segment: np.ndarray) -> Split:
        x, y = windows(segment, target_cols, cfg.window, cfg.horizon, cfg.stride)
        return Split((x - norm.input_mean) / norm.input_std, (y - norm.target_mean) / norm.target_std)

    return Dataset(make(train_s), make(val_s), make(test_s), norm, feature_names, target_names)
