"""The metadata an exported model carries (metadata_props), read without torch or our exporter.

Every key starts with `lstm_onnx.`; values are strings, JSON where structured.
"""
from __future__ import annotations

import json

PREFIX = "lstm_onnx."
KEYS = {
    "version": "package version that exported the model",
    "form": "native | decomposed | unrolled",
    "config": "the full run config (model, data, train) as JSON",
    "normalization": "JSON: input_mean/input_std (apply to raw inputs), target_mean/target_std (invert on y)",
    "feature_names": "JSON list: input features, in order",
    "target_names": "JSON list: predicted targets, in order",
    "checkpoint_sha256": "hash of the checkpoint file the model came from",
    "io": "JSON: the model's inputs and outputs with their meaning",
    "stateful": "true if the model takes h0/c0 and returns hn/cn",
    "opset": "the default-domain opset",
    "dtype": "float32 | float16: the precision of the computation (inputs and outputs stay float32)",
    "quantization": "none | int8 (dynamic, onnxruntime's quantize_dynamic)",
    "target": "the runtime that --form auto chose the form for (empty if chosen by hand)",
    "seq_len": "unrolled only: the static sequence length",
    "batch_size": "unrolled only: the static batch size",
    "accuracy": "JSON: float16/int8 exports: loss against the float32 model on the validation set",
    "validated_on": "JSON: the machine the export's validation ran on (core/machine.fingerprint, process=False)",
    "probe": "true if the model also outputs the gate traces probe.l{layer}.d{direction}.{trace} (docs/gates.md)",
}
JSON_KEYS = {"config", "normalization", "feature_names", "target_names", "io", "stateful", "seq_len",
             "batch_size", "accuracy", "probe", "validated_on"}


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
