"""Random-weight checkpoints and their exports, for benchmarks and tests (no training needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def random_checkpoint(input_size: int = 10, hidden_size: int = 50, num_layers: int = 1, peephole: bool = True,
                      output_size: int = 4, head: str = "last", seed: int = 0):
    import torch

    from lstm_onnx.pipeline.checkpoint import Checkpoint
    from lstm_onnx.pipeline.config import ModelConfig, RunConfig
    from lstm_onnx.pipeline.data import Normalization
    from lstm_onnx.pipeline.model import SequenceModel

    config = RunConfig(model=ModelConfig(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                                         peephole=peephole, output_size=output_size, head=head))
    config.data.num_features = input_size
    torch.manual_seed(seed)
    model = SequenceModel(config.model)
    zeros, ones = np.zeros(input_size), np.ones(input_size)
    norm = Normalization(zeros, ones, np.zeros(output_size), np.ones(output_size))
    return Checkpoint(config, {k: v.detach().clone() for k, v in model.state_dict().items()}, norm,
                      [f"f{i}" for i in range(input_size)], [f"t{i}" for i in range(output_size)], {})


def export_form(ckpt, form: str, path: str | Path, *, seq: int | None = None, batch: int | None = None,
                dtype: str = "float32", stateful: bool = False) -> Path:
    """Build `form` (a static-shape one at seq x batch) and save it, without the PyTorch validation pass."""
    import onnx

    from lstm_onnx.core.fileio import atomic_path
    from lstm_onnx.exporters.export import ExportOptions, build_model
    from lstm_onnx.exporters.forms import FORMS

    options = ExportOptions(form=form, stateful=stateful, dtype=dtype)
    if FORMS[form].static_shapes:
        options.seq_len, options.batch_size = seq, batch
    model = build_model(ckpt, options)
    with atomic_path(path) as tmp:  # bench/run.py reuses a file that exists: never a half-written one
        onnx.save(model, tmp)
    return Path(path)
