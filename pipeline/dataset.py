"""The dataset types every task produces: splits, normalization fitted on train, feature and target names."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    def identity(cls, num_features: int, num_targets: int) -> "Normalization":
        """For tasks whose inputs are already unit-scale; classifiers get no target statistics."""
        return cls(np.zeros(num_features, np.float32), np.ones(num_features, np.float32),
                   np.zeros(num_targets, np.float32), np.ones(num_targets, np.float32))

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(*(np.asarray(d[k], dtype=np.float32) for k in
                     ("input_mean", "input_std", "target_mean", "target_std")))


@dataclass
class Split:
    x: np.ndarray  # [N, window, F] float32, normalized
    y: np.ndarray  # [N, T] float32 normalized; [N, window, T] for sequence tasks; [N] int64 classes
    series: np.ndarray | None = None  # [N] int: the index in Dataset.series_names of each window's series


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    normalization: Normalization
    feature_names: list[str]
    target_names: list[str]
    series_names: list[str] = field(default_factory=list)  # a CSV with data.series_column: its series
    series_normalization: dict[str, Normalization] | None = None  # data.normalize = "series": per series
    columns: dict = field(default_factory=dict)  # CSV tasks: column roles (time, series, features, targets)

    def normalization_of(self, series: str) -> Normalization:
        return self.series_normalization[series] if self.series_normalization else self.normalization
