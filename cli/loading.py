"""What several commands load and check: a checkpoint, an ONNX model, a registry name; and the one-line failure."""
from __future__ import annotations

from pathlib import Path

import click


def fail(msg: str) -> None:
    raise click.ClickException(msg)


class RegistryName(click.ParamType):
    """A name from runtimes/registry.py: canonical, or an old spelling (mapped to the canonical one)."""

    def __init__(self, names, what: str):
        self.names, self.name = list(names), what

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(self.names) + "]"

    def convert(self, value, param, ctx):
        from lstm_onnx.runtimes.registry import UnknownRunner, resolve

        try:
            return resolve(value, self.names, self.name)
        except UnknownRunner as exc:
            self.fail(str(exc), param, ctx)


def load_ckpt(path):
    import warnings

    from lstm_onnx.pipeline.checkpoint import CheckpointError, load_checkpoint

    try:
        with warnings.catch_warnings():  # torch's unpickler warns about files it then refuses: one line is ours
            warnings.filterwarnings("ignore", module="torch")
            return load_checkpoint(path)
    except CheckpointError as exc:
        fail(str(exc))


def load_onnx(path):
    import onnx

    from lstm_onnx.runtimes.ort_file import interface_model, is_ort_format

    path = Path(path)
    if not path.is_file():
        fail(f"model not found: {path}")
    if is_ort_format(path):  # ONNX Runtime's format: its interface and metadata, no nodes to read
        try:
            model = interface_model(path)
        except ValueError as exc:
            fail(str(exc))
    else:
        model = _read_onnx(onnx, path)
    from lstm_onnx.runtimes.model_metadata import MetadataError, checked_metadata

    try:
        checked_metadata({p.key: p.value for p in model.metadata_props}, path, _feature_count(model))
    except MetadataError as exc:
        fail(str(exc))
    return model


def _read_onnx(onnx, path: Path):
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others
        fail(f"{path} is not a readable ONNX model ({type(exc).__name__}); export one with "
              f"`lstm-pipeline export`")
    if not model.graph.node:
        fail(f"{path} is not an ONNX model (empty graph)")
    if not _text_is_utf8(model):
        fail(f"{path} is not a readable ONNX model (names that are not UTF-8 text: the file is damaged)")
    return model


def _text_is_utf8(model) -> bool:
    """protobuf hands out a string field that is not UTF-8 as bytes: a damaged file that still parses."""
    g = model.graph
    texts = [o.domain for o in model.opset_import] + [t.name for t in g.initializer]
    texts += [vi.name for vi in (*g.input, *g.output)]
    for node in g.node:
        texts += [node.op_type, node.domain, node.name, *node.input, *node.output, *(a.name for a in node.attribute)]
        for attr in node.attribute:
            try:
                [v.decode() for v in (attr.s, *attr.strings)]
            except UnicodeDecodeError:
                return False
    return all(isinstance(t, str) for t in texts)


def _feature_count(model) -> int | None:
    """The last dim of input `x`, where the model has one and it is fixed."""
    for vi in model.graph.input:
        if vi.name == "x" and vi.type.tensor_type.shape.dim:
            return vi.type.tensor_type.shape.dim[-1].dim_value or None
    return None
