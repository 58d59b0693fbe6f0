"""PNG figures of the gate traces: Karpathy et al.'s saturation scatter and per-gate heatmaps over time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_onnx.core.figures import pyplot, save_figure
from lstm_onnx.core.probe import GATES
from lstm_onnx.runtimes.gate_stats import LEFT, RIGHT, GateReport, group

NAMES = {"i": "input gate", "f": "forget gate", "o": "output gate"}


def _where(layer: int, d: int) -> str:
    return f"layer {layer}" + (" reverse" if d else "")


def saturation_scatter(report: GateReport, path: Path) -> Path:
    """One panel per layer (and direction) and gate: a point per unit at (left-, right-saturated fraction)."""
    plt = pyplot()
    rows = sorted({(s.layer, s.direction) for s in report.stats})
    fig, axes = plt.subplots(len(rows), len(GATES), figsize=(3.2 * len(GATES), 3.0 * len(rows)), squeeze=False)
    for s in report.stats:
        ax = axes[rows.index((s.layer, s.direction))][GATES.index(s.gate)]
        ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)  # left + right = 1: saturated all the time
        ax.scatter(s.left, s.right, s=14, alpha=0.7)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=f"{_where(s.layer, s.direction)}: {NAMES[s.gate]}",
               xlabel=f"fraction left-saturated (< {LEFT:g})", ylabel=f"fraction right-saturated (> {RIGHT:g})")
    fig.suptitle(f"gate saturation, {report.source} ({report.sequences} x {report.steps} steps)")
    fig.tight_layout()
    return save_figure(fig, path)


def gate_heatmaps(traces: dict[str, np.ndarray], sequence: int, path: Path, title: str = "") -> Path:
    """Units x steps of each gate for one sequence of the batch, a row of panels per layer (and direction)."""
    plt = pyplot()
    grouped = group(traces)
    fig, axes = plt.subplots(len(grouped), len(GATES), figsize=(4.2 * len(GATES), 2.6 * len(grouped)),
                             squeeze=False)
    image = None
    for row, ((layer, d), t) in enumerate(grouped.items()):
        for col, gate in enumerate(GATES):
            ax = axes[row][col]
            image = ax.imshow(t[gate][:, sequence, :].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                              interpolation="nearest")
            ax.set(title=f"{_where(layer, d)}: {NAMES[gate]}", xlabel="step", ylabel="unit")
    fig.colorbar(image, ax=axes, shrink=0.8, label="activation")
    fig.suptitle(title or f"gates over time, sequence {sequence}")
    return save_figure(fig, path)
