"""Test-split metrics in the task's own units: RMSE/MAE for regression, accuracy for classes, spike timing."""
from __future__ import annotations

import numpy as np

from lstm_onnx.pipeline.config import RunConfig
from lstm_onnx.pipeline.data import Dataset, Normalization, Split


def denormalize(y: np.ndarray, norm: Normalization) -> np.ndarray:
    return y * norm.target_std + norm.target_mean


def regression_metrics(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict:
    """pred/true in raw units, [..., T]: RMSE and MAE over everything and per target."""
    err = pred - true
    flat = err.reshape(-1, err.shape[-1])
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "per_target": {n: {"rmse": float(np.sqrt(np.mean(flat[:, k] ** 2))),
                               "mae": float(np.mean(np.abs(flat[:, k])))} for k, n in enumerate(names)}}


def spike_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    """Spike trains [N, L, 1]: a step fires when the output exceeds 0.5.

    sequence_accuracy: the fraction of sequences in which every step is right (every spike exactly on time,
    no extra spike); spike_recall: target spikes hit on their exact step; false_spikes: extra firings per
    sequence.
    """
    fired, target = pred > 0.5, true > 0.5
    return {"sequence_accuracy": float(np.mean(np.all(fired == target, axis=(1, 2)))),
            "spike_recall": float((fired & target).sum() / max(target.sum(), 1)),
            "false_spikes": float((fired & ~target).sum() / len(fired))}


def persistence_rmse(split: Split, config: RunConfig, norm: Normalization, features: list[str],
                     targets: list[str]) -> float | None:
    """RMSE of repeating the last observed value, the baseline a forecaster must beat (None if unavailable)."""
    if config.model.head != "last" or config.data.task not in ("csv", "synthetic"):
        return None
    if not set(targets) <= set(features):
        return None
    cols = [features.index(t) for t in targets]
    last = split.x[:, -1, cols] * norm.input_std[cols] + norm.input_mean[cols]
    return float(np.sqrt(np.mean((last - denormalize(split.y, norm)) ** 2)))


def task_metrics(pred: np.ndarray, split: Split, config: RunConfig, norm: Normalization,
                 features: list[str], targets: list[str]) -> dict:
    """Metrics of model outputs `pred` (normalized, batch-major) against `split`."""
    if config.model.head == "classify":
        return {"accuracy": float(np.mean(pred.argmax(-1) == split.y)), "num_classes": int(pred.shape[-1])}
    raw_pred, raw_true = denormalize(pred, norm), denormalize(split.y, norm)
    out = regression_metrics(raw_pred, raw_true, targets)
    if config.data.task == "spike_timing":
        out.update(spike_metrics(raw_pred, raw_true))
    if config.data.task == "adding":
        out["baseline_mse"] = float(np.var(raw_true))  # always answering the mean
        out["mse"] = out["rmse"] ** 2
    if config.data.task in ("csv", "synthetic"):  # target_mean is the train mean only where it was fitted
        out["mean_rmse"] = float(np.sqrt(np.mean((raw_true - norm.target_mean) ** 2)))
    base = persistence_rmse(split, config, norm, features, targets)
    if base is not None:
        out["persistence_rmse"] = base
    return out


def split_metrics(pred: np.ndarray, split: Split, config: RunConfig, data: Dataset) -> dict:
    """task_metrics of a split; with several series also `per_series` (each with its `windows`). Under
    per-series normalization the overall figures pool the series' (RMSEs by their mean squares, MAEs by
    their means, weighted by windows), since no single normalization covers them."""
    if split.series is None:
        return task_metrics(pred, split, config, data.normalization, data.feature_names, data.target_names)
    per = {}
    for k, name in enumerate(data.series_names):
        idx = split.series == k
        if idx.any():
            per[name] = task_metrics(pred[idx], Split(split.x[idx], split.y[idx]), config, data.normalization_of(name),
                                     data.feature_names, data.target_names)
            per[name]["windows"] = int(idx.sum())
    overall = (_pooled(list(per.values())) if data.series_normalization else
               task_metrics(pred, split, config, data.normalization, data.feature_names, data.target_names))
    return {**overall, "per_series": per}


def _pooled(parts: list[dict]) -> dict:
    n = np.array([p["windows"] for p in parts], np.float64)

    def pool(values: list[float], squared: bool) -> float:
        v = np.asarray(values, np.float64)
        return float(np.sqrt(n @ v ** 2 / n.sum())) if squared else float(n @ v / n.sum())

    out = {k: pool([p[k] for p in parts], k != "mae") for k in ("rmse", "mae", "mean_rmse", "persistence_rmse")
           if all(k in p for p in parts)}
    out["per_target"] = {t: {k: pool([p["per_target"][t][k] for p in parts], k == "rmse") for k in ("rmse", "mae")}
                         for t in parts[0]["per_target"]}
    return out


def summary(test: dict) -> str:
    """One line of the headline test metrics."""
    keys = ("accuracy", "sequence_accuracy", "mse", "baseline_mse", "rmse", "mae", "mean_rmse", "persistence_rmse")
    return ", ".join(f"{k} {test[k]:.4g}" for k in keys if k in test)
