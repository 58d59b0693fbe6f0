"""Configuration dataclasses: what a run is made of, and how it is read from TOML."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

HEADS = ("last", "sequence", "classify")


def check_types(section) -> None:
    """ValueError unless each field holds its default's kind: TOML gives `epochs = 1.5` a float, `"2"` a
    string, and the comparisons after this would let the one through and trip over the other."""
    for f in dataclasses.fields(section):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = getattr(section, f.name)
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        elif isinstance(default, list):
            ok, kind = isinstance(value, (list, tuple)), "a list"
        else:
            continue
        if not ok:
            raise ValueError(f"{f.name} must be {kind}, got {value!r}")


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
        check_types(self)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        for name in ("input_size", "hidden_size", "num_layers", "output_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


TASKS = ("synthetic", "csv", "adding", "spike_timing", "spike_delay")
MISSING = ("error", "interpolate", "drop")
SCHEDULES = ("none", "cosine", "plateau")
DEVICES = ("cpu", "cuda", "auto")
NORMALIZE = ("global", "series")


@dataclass
class DataConfig:
    task: str = "synthetic"  # synthetic | csv | adding | spike_timing | spike_delay (see docs/tasks.md)
    num_features: int = 10
    window: int = 50  # input length (steps per sequence)
    horizon: int = 1
    stride: int = 1
    length: int = 2400  # time steps generated for the synthetic task
    noise: float = 0.05
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    # csv task: a file with a header row, one row per time step, in time order
    csv: str = ""  # a relative path in a TOML config is resolved against the config's folder
    features: list[str] = field(default_factory=list)  # input columns; empty: all but drop_columns
    targets: list[str] = field(default_factory=list)  # predicted columns; empty: same as features
    drop_columns: list[str] = field(default_factory=list)  # e.g. a date column
    missing: str = "error"  # error | interpolate (linear, in time) | drop (rows)
    difference: bool = False  # model first differences (x_t - x_{t-1}) instead of levels
    time_column: str = ""  # csv: a timestamp column (number or ISO date), increasing within each series; never an input
    series_column: str = ""  # csv: the series id of each row (long format); windows never cross a series
    normalize: str = "global"  # global (one set of statistics) | series (each series its own; csv with series_column)
    # generated sequence tasks (adding, spike_timing, spike_delay)
    num_samples: int = 2000  # sequences generated in all, split train/val/test by the fractions
    test_window: int = 0  # length of the generated test sequences; 0: window. Longer tests extrapolation
    period: int = 20  # spike_timing: steps between target spikes
    delays: list[int] = field(default_factory=lambda: [20, 30, 40])  # spike_delay: the classes

    def __post_init__(self) -> None:
        check_types(self)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if self.normalize == "series" and not self.series_column:
            raise ValueError("normalize = \"series\" needs series_column")
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}, got {self.missing!r}")
        for name in ("window", "horizon", "stride", "num_samples", "period"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.test_window and self.task not in ("adding", "spike_timing", "spike_delay"):
            raise ValueError("test_window applies only to the generated tasks (adding, spike_timing, spike_delay)")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum to less than 1")


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: chosen by measuring (pipeline/kernel_choice.py)
    patience: int = 0  # early stopping: epochs without a val improvement; 0: never stop early
    min_delta: float = 0.0  # an improvement must lower val loss by more than this
    schedule: str = "none"  # none | cosine (to lr * min_lr_factor over `epochs`) | plateau (halve)
    min_lr_factor: float = 0.05
    device: str = "cpu"  # cpu | cuda | auto (cuda when torch sees a GPU); --device overrides it

    def __post_init__(self) -> None:
        check_types(self)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("grad_clip", "patience", "threads", "seed", "min_delta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """The checks each section ran when it was made, again: for values set on it since (--epochs)."""
        for section in (self.model, self.data, self.train):
            section.__post_init__()


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"[{where}] must be a table of keys, got {values!r}")
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
    """Read a TOML run config; a relative `data.csv` is taken relative to the config's folder."""
    with open(path, "rb") as fh:
        try:
            values = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text (TOML files are UTF-8)") from None
    config = run_config_from_dict(values)
    if config.data.csv and not Path(config.data.csv).is_absolute():
        config.data.csv = str((Path(path).parent / config.data.csv).resolve())
    return config
