"""The metadata contract: every export form and option writes only keys the shipped JSON Schema documents, with
values of the documented type; docs/model-format.md lists exactly those keys. To cover a new export option,
add a row to EXPORTS; to add a key, add it to core/model_metadata.schema.json (its one place)."""
from pathlib import Path

import jsonschema
import onnx
import onnxruntime as ort
import pytest

from lstm_onnx.core import metadata
from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from tests.helpers import make_checkpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "model-format.md"
VALIDATOR = jsonschema.Draft202012Validator(metadata.schema())

# (checkpoint options, ExportOptions): each form, and each option that changes what is written.
EXPORTS = {
    "native": ({}, dict(form="native")),
    "native-stateful-lengths": ({}, dict(form="native", stateful=True, lengths=True)),
    "decomposed-stateful-lengths": ({}, dict(form="decomposed", stateful=True, lengths=True)),
    "decomposed-probe": ({}, dict(form="decomposed", probe=True)),
    "unrolled": ({}, dict(form="unrolled", seq_len=6, batch_size=2, stateful=True)),
    "float16": ({}, dict(form="decomposed", dtype="float16")),
    "int8": ({}, dict(form="native", quantize="int8")),
    "auto-target": ({}, dict(form="auto", target="onnxruntime-web", lengths=True)),
    "head-sequence-bidirectional": (dict(head="sequence", bidirectional=True), dict(form="native")),
    "head-classify-plain": (dict(head="classify", peephole=False), dict(form="native")),
    "opset-17": ({}, dict(form="native", opset=17)),
}


def decoded(path) -> dict:
    """The metadata as any ONNX Runtime app reads it (works for .onnx and .ort alike)."""
    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert all(k.startswith(metadata.PREFIX) for k in props), sorted(props)
    return metadata.decode(props)


def problems(meta: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(meta)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for name, (model, options) in EXPORTS.items():
        paths[name] = folder / f"{name}.onnx"
        export_checkpoint(make_checkpoint(**model), paths[name], ExportOptions(**options))
    return paths


@pytest.mark.parametrize("name", EXPORTS)
def test_every_export_validates_against_the_schema(exported, name):
    assert problems(decoded(exported[name])) == []


def test_ort_format_and_triton_rewrites_validate_too(exported, tmp_path):
    from lstm_onnx.runtimes.ort_format import convert
    from lstm_onnx.serving.triton_graph import triton_model

    convert(exported["native-stateful-lengths"], tmp_path / "m.ort", "extended")
    meta = decoded(tmp_path / "m.ort")
    assert meta["optimization"] == "extended" and problems(meta) == []
    model, _ = triton_model(exported["native-stateful-lengths"])
    onnx.save(model, tmp_path / "triton.onnx")
    assert problems(decoded(tmp_path / "triton.onnx")) == []


def test_an_undocumented_key_fails(exported, tmp_path):
    model = onnx.load(exported["native"])
    model.metadata_props.add(key=metadata.PREFIX + "machine", value="epyc")
    onnx.save(model, tmp_path / "extra.onnx")
    assert any("machine" in p for p in problems(decoded(tmp_path / "extra.onnx")))
    with pytest.raises(KeyError, match="machine"):
        metadata.encode({"machine": "epyc"})


@pytest.mark.parametrize("key, value", [("form", "rolled"), ("stateful", "yes"), ("seq_len", 0),
                                        ("normalization", {"input_mean": [0.0]}), ("opset", "21a")])
def test_a_wrong_value_fails(exported, key, value):
    meta = decoded(exported["unrolled"])
    assert problems(meta) == []
    meta[key] = value
    assert problems(meta), key


def test_every_key_has_a_meaning_a_version_and_an_encoding():
    for key, spec in metadata.schema()["properties"].items():
        assert spec["description"] and spec["x-since"] and spec["x-encoding"] in ("json", "text"), key
        if spec["x-encoding"] == "text":  # stored as text: the schema must not promise a number or a list
            assert spec.get("type", "string") == "string", key


def test_the_docs_list_exactly_the_schemas_keys():
    text = DOC.read_text()
    assert metadata.keys_markdown() in text, "docs/model-format.md: paste core.metadata.keys_markdown()"
