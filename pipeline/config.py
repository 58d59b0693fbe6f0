"""Configuration dataclasses: what a run is made of, and how it is read from TOML."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HEADS = ("last", "sequence", "classify")


@dataclass
class ModelConfig:
    input_size: int = 10
    hidden_size: int = 50
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = True
    dropout: float = 0.0  # between LSTM layers, as in nn.LSTM
    bidirectional: bool = False
    peephole: bool = True
    head: str = "last"  # last | sequence | classify
    head_dropout: float = 0.2  # before the dense head; identity at inference
    output_size: int = 10

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        for name in ("input_size", "hidden_size", "num_layers", "output_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


@dataclass
class DataConfig:
    task: str = "synthetic"  # synthetic multivariate forecasting (the default task)
    num_features: int = 10
    window: int = 50
    horizon: int = 1
    stride: int = 1
    length: int = 2400  # time steps generated for the synthetic task
    noise: float = 0.05
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0  # 0: leave torch's default


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _build(cls, values: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in [{where}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)


def run_config_from_dict(values: dict) -> RunConfig:
    unknown = sorted(set(values) - {"model", "data", "train"})
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(unknown)}; known: model, data, train")
    return RunConfig(
        model=_build(ModelConfig, values.get("model", {}), "model"),
        data=_build(DataConfig, values.get("data", {}), "data"),
        train=_build(TrainConfig, values.get("train", {}), "train"),
    )


def load_run_config(path: str | Path) -> RunConfig:
    with open(path, "rb") as fh:
        return run_config_from_dict(tomllib.load(fh))
