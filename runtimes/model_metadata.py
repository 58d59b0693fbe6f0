"""Our metadata of a model, decoded and checked where the deploy side relies on it: a model whose metadata
was edited or damaged is refused in one line naming the key, before any code trips over it."""
from __future__ import annotations

import json
import math

from lstm_onnx.core import metadata

NORMALIZATION_KEYS = ("input_mean", "input_std", "target_mean", "target_std")
HEADS = ("last", "sequence", "classify")


class MetadataError(ValueError):
    """The model's metadata is not what `lstm-pipeline export` writes; the message names the key."""


def checked_metadata(props: dict[str, str], source, num_features: int | None = None) -> dict:
    """metadata.decode(props), raising MetadataError where a key does not decode or has the wrong shape.
    `num_features`: the model's feature count, which the input normalization must match."""
    meta = {}
    for key, value in props.items():
        if not (isinstance(key, str) and isinstance(value, str)):  # protobuf hands out bytes that are not UTF-8
            _fail(source, repr(key), "is not UTF-8 text")
        try:
            meta.update(metadata.decode({key: value}))
        except json.JSONDecodeError as exc:
            _fail(source, key, f"is not valid JSON ({exc.msg} at char {exc.pos})")
    if "config" in meta:
        _check_config(meta["config"], source)
    if meta.get("normalization") is not None:
        _check_normalization(meta["normalization"], source, num_features)
    if meta.get("columns") is not None:
        _check_columns(meta["columns"], source)
    if not isinstance(meta.get("series_normalization") or {}, dict):
        _fail(source, metadata.PREFIX + "series_normalization", "must be a table of series")
    for norm in (meta.get("series_normalization") or {}).values():
        _check_normalization(norm, source, num_features)
    for key in ("feature_names", "target_names"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            _fail(source, metadata.PREFIX + key, f"must be a list of names, got {value!r:.60}")
    for key in ("seq_len", "batch_size"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            _fail(source, metadata.PREFIX + key, f"must be a positive integer, got {value!r:.60}")
    return meta


def require_export(meta: dict, source) -> None:
    """MetadataError unless the decoded metadata is an export's (it names its form): for the tools that rely on
    what an export promises (normalization, heads, state names), not just on tensors named x and y."""
    if "form" not in meta:
        raise MetadataError(f"{source} carries no {metadata.PREFIX}form metadata, so it is not a model that "
                            "`lstm-pipeline export` wrote; export the checkpoint with it")


def _fail(source, key: str, what: str):
    raise MetadataError(f"{source}: metadata {key} {what}; re-export the model with `lstm-pipeline export`")


def _check_config(config, source) -> None:
    key = metadata.PREFIX + "config"
    model = config.get("model", {}) if isinstance(config, dict) else None
    if not isinstance(model, dict):
        _fail(source, key, f"must be a table with a `model` table, got {config!r:.60}")
    head = model.get("head", "last")
    if head not in HEADS:
        _fail(source, key, f"names head {head!r}; expected one of {', '.join(HEADS)}")
    if not isinstance(model.get("batch_first", True), bool):
        _fail(source, key, f"has batch_first {model['batch_first']!r}; expected true or false")


def _check_columns(cols, source) -> None:
    key = metadata.PREFIX + "columns"
    names = lambda v: isinstance(v, list) and v and all(isinstance(n, str) for n in v)  # noqa: E731
    if not (isinstance(cols, dict) and names(cols.get("features")) and names(cols.get("targets"))
            and all(isinstance(cols.get(k, ""), str) for k in ("time", "series"))
            and all(isinstance(cols.get(k), int) and not isinstance(cols.get(k), bool) and cols[k] > 0
                    for k in ("window", "horizon"))):
        _fail(source, key, f"must hold features, targets (names), time, series (a name or \"\") and a positive "
                           f"window and horizon, got {cols!r:.60}")


def _check_normalization(norm, source, num_features: int | None) -> None:
    key = metadata.PREFIX + "normalization"
    if not isinstance(norm, dict) or set(norm) != set(NORMALIZATION_KEYS):
        _fail(source, key, f"must have exactly {', '.join(NORMALIZATION_KEYS)}, got {norm!r:.60}")
    for name in NORMALIZATION_KEYS:
        values = norm[name]
        if not (isinstance(values, list) and all(_finite(v) for v in values)):
            _fail(source, key, f"{name} must be a list of finite numbers")
        if name.endswith("_std") and not all(v > 0 for v in values):
            _fail(source, key, f"{name} must be > 0")
    for part in ("input", "target"):
        if len(norm[f"{part}_mean"]) != len(norm[f"{part}_std"]):
            _fail(source, key, f"{part}_mean and {part}_std differ in length")
    if num_features is not None and len(norm["input_mean"]) != num_features:
        _fail(source, key, f"has {len(norm['input_mean'])} input feature(s); the model takes {num_features}")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
