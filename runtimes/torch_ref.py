"""The reference: the trained PyTorch SequenceModel itself, in eval mode (on the CPU, or on CUDA)."""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerUnavailable


def cuda_missing() -> str | None:
    """Why torch cannot run on CUDA here; None if it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed: pip install 'lstm-onnx-pipeline[train]'"
    return None if torch.cuda.is_available() else "torch has no CUDA device here; install a CUDA build of torch"


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model, inputs: list[str] = ("x",), device: str = "cpu"):
        """`model`: a pipeline.model.SequenceModel; `inputs`: the feeds to expect (x, lengths, h0, c0)."""
        super().__init__()
        self.model = model.eval()
        self.inputs = list(inputs)
        self.device = device

    def _activate(self):
        if self.device != "cpu":
            why = cuda_missing() if self.device == "cuda" else f"unknown torch device {self.device!r}"
            if why:
                raise RunnerUnavailable(why)
        self.model = self.model.to(self.device)

    def _input_names(self) -> list[str]:
        return self.inputs

    def _infer(self, feeds):
        import torch

        def tensor(name, dtype=None):
            value = torch.from_numpy(np.ascontiguousarray(feeds[name]))
            return (value if dtype is None else value.to(dtype)).to(self.device)

        with torch.no_grad():
            x = tensor("x")
            state = (tensor("h0"), tensor("c0")) if "h0" in feeds else None
            lengths = tensor("lengths", torch.int64) if "lengths" in feeds else None
            y, (h_n, c_n) = self.model(x, state, lengths)
        return {"y": y.cpu().numpy(), "hn": h_n.cpu().numpy(), "cn": c_n.cpu().numpy()}


class ModuleRunner(Runner):
    """Any torch module that maps x to a tensor or a tuple of tensors (a user's module, `export --module`),
    on the CPU; its outputs are named by `outputs`, in order (default: y, y_1, y_2, ..., as `export --module`
    names them)."""

    name = "torch-module"

    def __init__(self, module, outputs: list[str] | None = None):
        super().__init__()
        self.module = module.eval()
        self.outputs = list(outputs) if outputs else None

    def _input_names(self) -> list[str]:
        return ["x"]

    def _infer(self, feeds):
        import torch

        with torch.no_grad():
            result = self.module(torch.from_numpy(np.ascontiguousarray(feeds["x"], dtype=np.float32)))
        items = list(result) if isinstance(result, (tuple, list)) else [result]
        names = self.outputs or ["y"] + [f"y_{k}" for k in range(1, len(items))]
        return {name: t.detach().cpu().numpy() for name, t in zip(names, items)}
