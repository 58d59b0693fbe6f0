"""A request body -> float32 arrays by its media type: .npy when it says so, JSON otherwise (curl's default
form type included, so a plain `curl -d` works)."""
from __future__ import annotations

import numpy as np

from lstm_onnx.serving import npy_body
from lstm_onnx.serving.inputs import may_hide_non_numbers, parse_json, predict_inputs, step_inputs


def _json(raw: bytes) -> tuple[dict, bool]:
    """(parsed body, whether values need their types checked)."""
    return parse_json(raw), may_hide_non_numbers(raw)


def predict_arrays(raw: bytes, media_type: str, num_features: int, max_items: int, max_steps: int) -> list:
    """A /v1/predict body -> float32 [S_k, F] per sequence, or the ApiError that says what is wrong."""
    if media_type == npy_body.MEDIA_TYPE:
        dims = ("sequences", "steps", "features")
        return list(npy_body.npy_array(raw, dims, num_features, max_items, max_steps))
    data, strict = _json(raw)
    return predict_inputs(data, num_features, max_items, max_steps, strict)


def step_array(raw: bytes, media_type: str, num_features: int, max_steps: int) -> np.ndarray:
    """A session step's body -> float32 [S, F], or the ApiError that says what is wrong."""
    if media_type == npy_body.MEDIA_TYPE:
        return npy_body.npy_array(raw, ("steps", "features"), num_features, 1, max_steps)
    data, strict = _json(raw)
    return step_inputs(data, num_features, max_steps, strict)
