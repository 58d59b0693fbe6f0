"""verify: a checkpoint and its exported model, on every available runner, against the torch reference."""
from __future__ import annotations

from runtimes.compare import ParityReport, Tolerances
from runtimes.feeds import onnx_input_shapes, random_feeds
from runtimes.parity import run_parity

RUNNERS = ("numpy", "onnxruntime-cpu", "onnx.reference")


def build_runners(names, ckpt, model_path, inputs):
    from runtimes.numpy_ref import NumpyRunner
    from runtimes.onnx_reference import OnnxReferenceRunner
    from runtimes.ort import OnnxRuntimeRunner

    made = []
    for name in names:
        if name == "numpy":
            made.append(NumpyRunner(ckpt.state_dict, ckpt.model_config, inputs))
        elif name.startswith("onnxruntime-"):
            made.append(OnnxRuntimeRunner(model_path, provider=name.split("-", 1)[1]))
        elif name == "onnx.reference":
            made.append(OnnxReferenceRunner(model_path))
        else:
            raise ValueError(f"unknown runner {name!r}; known: numpy, onnxruntime-<provider>, onnx.reference")
    return made


def verify_checkpoint(ckpt, model_path, runners=RUNNERS, batch: int = 4, seq: int = 23, seed: int = 0,
                      tolerances: Tolerances | None = None) -> ParityReport:
    """Feed random inputs of (batch, seq) to every runner and compare each with the torch model."""
    import onnx

    from runtimes.torch_ref import TorchRunner

    model = onnx.load(str(model_path), load_external_data=False)
    shapes = onnx_input_shapes(model)
    feeds = random_feeds(shapes, batch, seq, seed)
    reference = TorchRunner(ckpt.build_model(), list(shapes))
    outputs = [o.name for o in model.graph.output]
    return run_parity(reference, build_runners(runners, ckpt, model_path, list(shapes)), feeds, tolerances,
                      outputs)
