"""The metadata an exported model carries (metadata_props), read without torch or our exporter.

Every key starts with `lstm_onnx.`; values are strings, JSON where structured.
"""
from __future__ import annotations

import functools
import json
from importlib.resources import files

PREFIX = "lstm_onnx."
# The one list of keys, with their meaning, version and type: the JSON Schema shipped next to this module
# (docs/model-format.md renders it; tests validate every export against it).
SCHEMA_FILE = "model_metadata.schema.json"


@functools.cache
def _schema_text() -> str:
    return files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def schema() -> dict:
    """The JSON Schema of decoded metadata (a fresh copy; the file is read once)."""
    return json.loads(_schema_text())


_PROPERTIES = schema()["properties"]
KEYS = {k: v["description"] for k, v in _PROPERTIES.items()}
JSON_KEYS = {k for k, v in _PROPERTIES.items() if v["x-encoding"] == "json"}


def encode(values: dict) -> dict[str, str]:
    unknown = set(values) - set(KEYS)
    if unknown:
        raise KeyError(f"unknown metadata key(s): {sorted(unknown)}")
    return {PREFIX + k: json.dumps(v) if k in JSON_KEYS else str(v) for k, v in values.items()}


def decode(props: dict[str, str]) -> dict:
    """Our keys from a model's metadata_props (as a plain dict), decoded; other keys are left out."""
    out = {}
    for key, value in props.items():
        if key.startswith(PREFIX):
            short = key[len(PREFIX):]
            out[short] = json.loads(value) if short in JSON_KEYS else value
    return out


def read(model_path: str) -> dict:
    """Decoded metadata of a model file, through onnx if installed, else onnxruntime."""
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        meta = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).get_modelmeta()
        return decode(meta.custom_metadata_map)
    model = onnx.load(model_path, load_external_data=False)
    return decode({p.key: p.value for p in model.metadata_props})


def keys_markdown() -> str:
    """The table of keys in docs/model-format.md (a test keeps the page equal to it)."""
    lines = ["| key (`lstm_onnx.` + ) | stored as | since | meaning |", "|---|---|---|---|"]
    for key, spec in _PROPERTIES.items():
        lines.append(f"| `{key}` | {'JSON' if spec['x-encoding'] == 'json' else 'text'} | {spec['x-since']} | "
                     f"{spec['description'].replace('|', '/')} |")
    return "\n".join(lines)
