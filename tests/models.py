"""Small exported models for serving and embedding tests: random weights, non-trivial normalization."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_onnx.pipeline.data import Normalization
from tests.helpers import make_checkpoint

F, O, H = 3, 2, 8


def checkpoint(head: str = "last", seed: int = 0, bias: bool = True):
    ckpt = make_checkpoint(seed, input_size=F, hidden_size=H, output_size=O, head=head, bias=bias)
    rng = np.random.default_rng(seed)
    # Means and spreads far from 0/1, so a server that skipped (or doubled) normalization is caught.
    f32 = np.float32
    ckpt.normalization = Normalization(rng.normal(5, 2, F).astype(f32), rng.uniform(0.5, 3, F).astype(f32),
                                       rng.normal(-3, 1, O).astype(f32), rng.uniform(2, 4, O).astype(f32))
    return ckpt


def export(ckpt, out: Path, stateful: bool = False, lengths: bool = False) -> Path:
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    export_checkpoint(ckpt, out, ExportOptions(stateful=stateful, lengths=lengths))
    return out


def torch_reference(ckpt, x_raw: np.ndarray) -> np.ndarray:
    """PyTorch on the normalized input, denormalized: what a served raw-in/raw-out prediction must equal."""
    import torch

    n = ckpt.normalization
    xn = (x_raw - n.input_mean) / n.input_std
    with torch.no_grad():
        y = ckpt.build_model()(torch.from_numpy(xn.astype(np.float32)))[0].numpy()
    return y if ckpt.model_config.head == "classify" else y * n.target_std + n.target_mean


def raw_inputs(rng, lengths, scale: float = 1.0) -> list[np.ndarray]:
    return [(rng.normal(5, 2, (n, F)) * scale).astype(np.float32) for n in lengths]
