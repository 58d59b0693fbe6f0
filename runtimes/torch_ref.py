"""The reference: the trained PyTorch SequenceModel itself, in eval mode."""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import Runner


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model, inputs: list[str] = ("x",)):
        """`model`: a pipeline.model.SequenceModel; `inputs`: the feeds to expect (x, lengths, h0, c0)."""
        super().__init__()
        self.model = model.eval()
        self.inputs = list(inputs)

    def _input_names(self) -> list[str]:
        return self.inputs

    def _infer(self, feeds):
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(feeds["x"]))
            state = None
            if "h0" in feeds:
                state = (torch.from_numpy(feeds["h0"]), torch.from_numpy(feeds["c0"]))
            lengths = torch.from_numpy(feeds["lengths"].astype(np.int64)) if "lengths" in feeds else None
            y, (h_n, c_n) = self.model(x, state, lengths)
        return {"y": y.numpy(), "hn": h_n.numpy(), "cn": c_n.numpy()}
