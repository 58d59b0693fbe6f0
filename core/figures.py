"""PNG figures: matplotlib loaded lazily (the [plots] extra), written atomically."""
from __future__ import annotations

from pathlib import Path

from lstm_onnx.core.fileio import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend; ValueError naming the extra when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'lstm-onnx-pipeline[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)
