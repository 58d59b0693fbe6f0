"""Shared test builders: untrained models wrapped as checkpoints (no training needed for parity)."""
from __future__ import annotations

import numpy as np
import torch

from lstm_onnx.pipeline.checkpoint import Checkpoint
from lstm_onnx.pipeline.config import DataConfig, ModelConfig, RunConfig
from lstm_onnx.pipeline.data import Normalization
from lstm_onnx.pipeline.model import SequenceModel


def make_checkpoint(seed: int = 0, **model_kwargs) -> Checkpoint:
    """A Checkpoint of a randomly initialised SequenceModel (small by default)."""
    kwargs = dict(input_size=3, hidden_size=8, output_size=2)
    kwargs.update(model_kwargs)
    cfg = ModelConfig(**kwargs)
    torch.manual_seed(seed)
    model = SequenceModel(cfg)
    F, T = cfg.input_size, cfg.output_size
    norm = Normalization(np.zeros(F, np.float32), np.ones(F, np.float32), np.zeros(T, np.float32),
                         np.ones(T, np.float32))
    config = RunConfig(model=cfg, data=DataConfig(num_features=F))
    return Checkpoint(config, model.state_dict(), norm, [f"f{k}" for k in range(F)],
                      [f"t{k}" for k in range(T)], {})
