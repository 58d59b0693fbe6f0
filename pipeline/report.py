"""A run report: test metrics plus PNG plots (loss curves; forecast against actual on the test split)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lstm_onnx.core.figures import pyplot as _pyplot
from lstm_onnx.core.figures import save_figure
from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.pipeline.checkpoint import Checkpoint
from lstm_onnx.pipeline.data import Dataset, load_dataset
from lstm_onnx.pipeline.metrics import denormalize, split_metrics, summary
from lstm_onnx.pipeline.train import predict


def plot_losses(history: list[dict], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title=title or "loss", yscale="log")
    ax.legend()
    return save_figure(fig, path)


def plot_test(ckpt: Checkpoint, data: Dataset, pred: np.ndarray, path: Path) -> Path:
    """Forecast vs actual (last head), output vs target per step (sequence head), or a confusion matrix."""
    plt = _pyplot()
    head, names = ckpt.model_config.head, data.target_names
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if head == "classify":
        k = len(names)
        conf = np.zeros((k, k), int)
        np.add.at(conf, (data.test.y, pred.argmax(-1)), 1)
        ax.imshow(conf, cmap="Blues")
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(xticks=range(k), yticks=range(k), xticklabels=names, yticklabels=names,
               xlabel="predicted", ylabel="true", title="test confusion matrix")
    elif head == "sequence":
        true, out = denormalize(data.test.y, ckpt.normalization), denormalize(pred, ckpt.normalization)
        for n in range(min(3, len(true))):
            line, = ax.plot(true[n, :, 0] + 1.5 * n, drawstyle="steps-mid", alpha=0.5)
            ax.plot(out[n, :, 0] + 1.5 * n, color=line.get_color(), linestyle="--")
        ax.set(xlabel="step", ylabel=f"{names[0]} (offset per sequence)",
               title="test sequences: target (solid) vs output (dashed)")
    else:
        y, norm, where = data.test.y, ckpt.normalization, ""
        if data.test.series is not None:  # the first series: windows of one series are in time order
            first = data.test.series == data.test.series[0]
            y, pred, where = y[first], pred[first], data.series_names[data.test.series[0]]
            norm = data.normalization_of(where)
            where = f", series {where}"
        true, out = denormalize(y, norm), denormalize(pred, norm)
        ax.plot(true[:, 0], label=f"actual {names[0]}", lw=1)
        ax.plot(out[:, 0], label=f"forecast {names[0]}", lw=1)
        unit = f"change in {names[0]} per step" if ckpt.data_config.difference else names[0]
        ax.set(xlabel="test window (time order)", ylabel=unit,
               title=f"test split{where}, {ckpt.data_config.horizon}-step-ahead forecast")
        ax.legend()
    return save_figure(fig, path)


def write_report(ckpt: Checkpoint, out: str | Path, data: Dataset | None = None) -> list[Path]:
    """Evaluate `ckpt` on its test split; write metrics.json, loss.png, test.png and report.md into `out`."""
    out = Path(out)
    data = data or load_dataset(ckpt.data_config)
    model = ckpt.build_model()
    pred = predict(model, data.test.x)
    metrics = split_metrics(pred, data.test, ckpt.config, data)
    files = []
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"test": metrics, "training": {k: v for k, v in ckpt.metrics.items()
                                                                  if k != "test"}}, indent=2))
    files.append(out / "metrics.json")
    history = ckpt.metrics.get("history", [])
    if history:
        files.append(plot_losses(history, out / "loss.png", f"{ckpt.data_config.task}: loss"))
    files.append(plot_test(ckpt, data, pred, out / "test.png"))
    files.append(_markdown(ckpt, metrics, out / "report.md", bool(history)))
    return files


def _markdown(ckpt: Checkpoint, metrics: dict, path: Path, has_loss: bool) -> Path:
    c, m = ckpt.config, ckpt.metrics
    lines = [f"# Run report: task `{c.data.task}`", "",
             f"- model: {'peephole' if c.model.peephole else 'plain'} LSTM, hidden {c.model.hidden_size}, "
             f"{c.model.num_layers} layer(s), head `{c.model.head}`",
             f"- epochs run: {m.get('epochs_run', '?')} (best {m.get('best_epoch', '?')}), "
             f"training time {m.get('train_seconds', 0):.1f} s",
             f"- test: {summary(metrics)}", ""]
    for name, part in metrics.get("per_series", {}).items():
        lines.insert(-1, f"  - series `{name}` ({part['windows']} windows): {summary(part)}")
    if has_loss:
        lines += ["![loss curves](loss.png)", ""]
    lines += ["![test split](test.png)", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
