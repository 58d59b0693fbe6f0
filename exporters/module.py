"""A user's own nn.Module that contains LSTMs (PeepholeLSTM or nn.LSTM, with any layers around them) -> ONNX.

Every nn.LSTM is swapped for `PeepholeLSTM.from_lstm` (same weights, no peepholes), so that inside
`torch.onnx.export(..., dynamo=True)` each LSTM, peephole or not, becomes one native `LSTM` node per layer
(pipeline/onnx_symbolic.py), P included where there are peepholes. The export is validated like ours
(checker, dynamic batch and sequence axes, parity with the user's own, unswapped module at sizes the export did
not see) before it is written, with metadata naming where it came from.

    export_module("pkg.mod:factory", "m.onnx", input_shape=(2, 16, 3), state_dict="w.pt")
"""
from __future__ import annotations

import copy
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from lstm_onnx.core import __version__, metadata
from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.exporters.errors import ExportError
from lstm_onnx.exporters.opsets import check_opset
from lstm_onnx.exporters.torch_onnx import _quiet
from lstm_onnx.exporters.validate import ValidationError, check_symbolic_dims
from lstm_onnx.pipeline.model import PeepholeLSTM
from lstm_onnx.runtimes.base import error_message
from lstm_onnx.runtimes.compare import Tolerances
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from lstm_onnx.runtimes.parity import run_parity
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.runtimes.torch_ref import ModuleRunner

CHECK_SIZES = ((3, 17), (5, 29))  # (batch, seq): unlike any example size, long enough for a conv front end


def load_module(spec: str, state_dict: str | os.PathLike | None = None) -> nn.Module:
    """`pkg.mod:factory` called (or `pkg.mod:Class` built) with no arguments, in eval mode, with the weights of
    `state_dict` (a torch.save'd state_dict) if given. The working folder is importable, as with `python -m`.
    ExportError (one line) when it cannot be imported, built or loaded."""
    mod_name, sep, attr = spec.partition(":")
    if not (sep and mod_name and attr):
        raise ExportError(f"--module {spec!r}: expected MODULE:FACTORY, e.g. mypkg.models:make_model")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except ImportError as exc:
        raise ExportError(f"--module {spec}: cannot import {mod_name}: {exc}") from None
    except AttributeError:
        raise ExportError(f"--module {spec}: {mod_name} has no {attr!r}") from None
    if not (isinstance(factory, nn.Module) or callable(factory)):
        raise ExportError(f"--module {spec}: {attr} is a {type(factory).__name__}, not a function or class")
    try:
        module = factory if isinstance(factory, nn.Module) else factory()
    except Exception as exc:  # the user's own code: any error, reported in one line
        raise ExportError(f"--module {spec}: {attr}() raised {error_message(exc)}") from None
    if not isinstance(module, nn.Module):
        raise ExportError(f"--module {spec}: {attr}() returned a {type(module).__name__}, not a torch.nn.Module")
    if state_dict is not None:
        _load_weights(module, Path(state_dict))
    return module.eval()


def _load_weights(module: nn.Module, path: Path) -> None:
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"--state-dict {path}: not found") from None
    except Exception as exc:  # torch.load raises UnpicklingError, RuntimeError, EOFError, ... on a bad file
        raise ExportError(f"--state-dict {path}: not a readable state_dict ({type(exc).__name__})") from None
    if isinstance(weights, dict) and isinstance(weights.get("state_dict"), dict):
        weights = weights["state_dict"]
    if not isinstance(weights, dict):
        raise ExportError(f"--state-dict {path}: holds a {type(weights).__name__}, not a state_dict")
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise ExportError(f"--state-dict {path} does not fit the module: {' '.join(str(exc).split())[:300]}") \
            from None


def with_onnx_lstms(module: nn.Module) -> nn.Module:
    """A copy of `module` with every nn.LSTM replaced by PeepholeLSTM.from_lstm (which exports natively)."""
    out = copy.deepcopy(module)
    for name, child in list(out.named_modules()):
        for attr, grandchild in list(child.named_children()):
            if isinstance(grandchild, nn.LSTM):
                setattr(child, attr, PeepholeLSTM.from_lstm(grandchild))
    return out


def lstm_count(module: nn.Module) -> tuple[int, int]:
    """(LSTM layers with peepholes, without) in `module`."""
    peep = plain = 0
    for m in module.modules():
        if isinstance(m, PeepholeLSTM):
            peep, plain = (peep + m.num_layers, plain) if m.peephole else (peep, plain + m.num_layers)
        elif isinstance(m, nn.LSTM):
            plain += m.num_layers
    return peep, plain


def build_module_model(module: nn.Module, input_shape: tuple[int, int, int], opset: int | None = None,
                       source: str = "", weights_sha256: str = "") -> onnx.ModelProto:
    """The ONNX graph of `module` on x [batch, seq, features] (batch and seq dynamic), outputs y, y_1, ..."""
    try:
        import onnxscript  # noqa: F401 - torch.onnx's dynamo exporter needs it
    except ImportError:
        raise ExportError("--module needs onnxscript: pip install 'lstm-onnx-pipeline[torch-onnx]'") from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ExportError(f"--input-shape {input_shape}: expected B,S,F (three sizes >= 1)")
    peep, plain = lstm_count(module)
    if not peep + plain:
        raise ExportError("the module holds no PeepholeLSTM or nn.LSTM: nothing for this exporter to do")
    opset = check_opset(opset)
    batch, seq, features = input_shape
    x = torch.zeros(max(batch, 2), max(seq, 2), features)  # torch.export fixes an axis traced at size 1
    swapped = with_onnx_lstms(module).eval()
    with torch.no_grad():
        n_out = len(_outputs(swapped(x)))
    names = ["y"] + [f"y_{k}" for k in range(1, n_out)]
    auto = torch.export.Dim.AUTO
    try:
        with _quiet():
            program = torch.onnx.export(swapped, (x,), dynamo=True, dynamic_shapes=({0: auto, 1: auto},),
                                        input_names=["x"], output_names=names, opset_version=opset,
                                        verbose=False, optimize=True)
    except Exception as exc:  # torch.export's many error types; the first line says what it could not trace
        raise ExportError(f"torch.onnx.export could not export the module: {error_message(exc)}") from None
    model = program.model_proto
    _name_axes(model)
    model.producer_name = "lstm-onnx-pipeline (torch.onnx, --module)"
    io = {"inputs": {"x": "[batch, seq, features] float32, as the module takes it"},  # the shape of every export's
          "outputs": {n: "the module's output" + (f" {k}" if k else "") for k, n in enumerate(names)}}
    props = metadata.encode({"version": __version__, "form": "native", "opset": opset, "dtype": "float32",
                             "quantization": "none", "io": io, "source_module": source,
                             "checkpoint_sha256": weights_sha256})
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    return model


def _outputs(result) -> list[torch.Tensor]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise ExportError("the module must return a tensor or a tuple of tensors (return the LSTM's state "
                          "tensors, not the (h, c) pair nested inside)")
    return items


def _name_axes(model: onnx.ModelProto) -> None:
    """torch.export names x's axes s0, s1, ...: call them batch and seq wherever they appear."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    rename = {dims[0].dim_param: "batch", dims[1].dim_param: "seq"}
    rename.pop("", None)
    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]


def validate_module_model(model: onnx.ModelProto, module: nn.Module, features: int) -> None:
    """Checker, dynamic axes, and parity of ORT with the user's own module at CHECK_SIZES."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"onnx.checker rejected the export: {str(exc).splitlines()[0]}") from None
    check_symbolic_dims(model)
    outputs = [o.name for o in model.graph.output]
    blob = model.SerializeToString()
    for batch, seq in CHECK_SIZES:
        x = np.random.default_rng(batch).standard_normal((batch, seq, features)).astype(np.float32)
        report = run_parity(ModuleRunner(module, outputs), [OnnxRuntimeRunner(blob, profile=False)], {"x": x},
                            Tolerances(default_tolerance("float32")), outputs=outputs)
        if not report.passed:
            raise ValidationError(f"exported model disagrees with the module at batch {batch}, seq {seq}:\n"
                                  + report.to_table())


def export_module(spec_or_module, out: str | os.PathLike, input_shape: tuple[int, int, int],
                  state_dict: str | os.PathLike | None = None, opset: int | None = None) -> onnx.ModelProto:
    """Export a user's module (an nn.Module, or `pkg.mod:factory`), validate it, then write it atomically."""
    import hashlib

    if isinstance(spec_or_module, nn.Module):
        module, source = spec_or_module.eval(), type(spec_or_module).__qualname__
        if state_dict is not None:
            _load_weights(module, Path(state_dict))
    else:
        module, source = load_module(spec_or_module, state_dict), spec_or_module
    sha = hashlib.sha256(Path(state_dict).read_bytes()).hexdigest() if state_dict is not None else ""
    model = build_module_model(module, tuple(input_shape), opset, source, sha)
    validate_module_model(model, module, input_shape[2])
    with atomic_path(out) as tmp:
        onnx.save(model, tmp)
    return model
