"""Body checks at their edges: float32's range, and which bodies get every value's type checked."""
from __future__ import annotations

import numpy as np
import pytest

from lstm_onnx.serving.inputs import ApiError, may_hide_non_numbers, sequence

ROUNDS_TO_INF = 2.0**128 - 2.0**103  # float32 max plus half its last step: the cast rounds this to inf


def test_values_that_round_to_float32_max_pass_and_beyond_is_refused():
    below = float(np.nextafter(ROUNDS_TO_INF, 0))
    arr = sequence([[1.0, -below]], 2, 10, "s", False)
    assert arr.dtype == np.float32 and arr[0, 1] == -np.finfo(np.float32).max
    with pytest.raises(ApiError, match="beyond float32"):
        sequence([[1.0, ROUNDS_TO_INF]], 2, 10, "s", False)


@pytest.mark.parametrize("raw, hides", [
    (b'{"inputs": [[[0.5, -1e-3, 2E+5]]]}', False), (b'{ "inputs" :\n[[[1,2]]] }', False),
    (b'{"inputs": [[[1, true]]]}', True), (b'{"inputs": [[[1, false]]]}', True), (b'{"inputs": [[[1, null]]]}', True),
    (b'{"inputs": [[[1, "2"]]]}', True), (b'{"inputs": [[[1]]], "id": 3}', True)])
def test_bodies_that_may_hide_non_numbers(raw, hides):
    assert may_hide_non_numbers(raw) is hides
