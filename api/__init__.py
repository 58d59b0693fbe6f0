"""lstm-onnx-pipeline: peephole LSTMs from PyTorch to ONNX's native LSTM op, checked on every runtime.

    from lstm_onnx import fit, export, Predictor
    ckpt = fit(df, target="load", time_column="timestamp", series_column="site", window=24)
    export(ckpt, "model.onnx")                  # validated against PyTorch before it is written
    Predictor.load("model.onnx").forecast(df)   # labelled with series and time

Importing this package loads nothing else: `fit` and `export` need the [train] extra (torch) and are imported
when first used, so a deploy install (no torch) can still `from lstm_onnx import Predictor`.
"""
from __future__ import annotations

__all__ = ["fit", "export", "Predictor"]


def __getattr__(name: str):
    if name in ("fit", "export"):
        try:
            if name == "fit":
                from lstm_onnx.pipeline.fit import fit as found
            else:
                from lstm_onnx.exporters.export import export as found
        except ModuleNotFoundError as exc:
            if exc.name not in ("torch", "tqdm", "tomli_w"):
                raise
            raise ImportError(f"lstm_onnx.{name} needs the [train] extra ({exc.name}): "
                              f"pip install 'lstm-onnx-pipeline[train]'") from None
        return found
    if name == "Predictor":
        from lstm_onnx.runtimes.embed import Predictor

        return Predictor
    raise AttributeError(f"module 'lstm_onnx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
