"""Checkpoints that carry their own model and data config (nanoGPT style), loadable with weights_only=True."""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from lstm_onnx.core import __version__
from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.pipeline.config import DataConfig, ModelConfig, RunConfig, run_config_from_dict
from lstm_onnx.pipeline.data import Normalization
from lstm_onnx.pipeline.model import SequenceModel

FORMAT = "lstm-onnx-pipeline/checkpoint-1"


class CheckpointError(ValueError):
    """The file is not a usable checkpoint; the message says why."""


@dataclass
class Checkpoint:
    config: RunConfig
    state_dict: dict
    normalization: Normalization
    feature_names: list[str]
    target_names: list[str]
    metrics: dict
    columns: dict = dataclasses.field(default_factory=dict)  # CSV tasks: the column roles (Dataset.columns)
    series_normalization: dict[str, Normalization] | None = None  # data.normalize = "series"

    @property
    def model_config(self) -> ModelConfig:
        return self.config.model

    @property
    def data_config(self) -> DataConfig:
        return self.config.data

    def build_model(self) -> SequenceModel:
        model = SequenceModel(self.config.model)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def save(self, path: str | Path) -> None:
        payload = {
            "format": FORMAT,
            "version": __version__,
            "config": dataclasses.asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "normalization": self.normalization.to_dict(),
            "feature_names": list(self.feature_names),
            "target_names": list(self.target_names),
            "metrics": self.metrics,
            "columns": self.columns,
            "series_normalization": ({k: v.to_dict() for k, v in self.series_normalization.items()}
                                     if self.series_normalization else None),
        }
        save_torch(payload, path)


def save_torch(obj, path: str | Path) -> None:
    """torch.save, atomically. Serialized in memory first: torch's writer turns a short write on a full
    disk into a RuntimeError, where a plain write raises the OSError that atomic_path reports in one line."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                              f"train one with `lstm-pipeline train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lstm-onnx-pipeline checkpoint (format {FORMAT} expected)")
    try:
        config = run_config_from_dict(payload["config"])
        ckpt = Checkpoint(config, payload["state_dict"], Normalization.from_dict(payload["normalization"]),
                          payload["feature_names"], payload["target_names"], payload.get("metrics", {}),
                          payload.get("columns") or {}, _series_normalization(payload.get("series_normalization")))
        ckpt.build_model()  # proves the weights fit the config
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is damaged: {str(exc).splitlines()[0]}") from None
    return ckpt


def _series_normalization(saved: dict | None) -> dict[str, Normalization] | None:
    return {k: Normalization.from_dict(v) for k, v in saved.items()} if saved else None
