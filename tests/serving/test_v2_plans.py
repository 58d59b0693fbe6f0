"""v2_protocol's remembered headers: a repeated binary header decodes, and is refused, exactly as the first time."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lstm_onnx.serving import v2_protocol
from lstm_onnx.serving.inputs import ApiError
from lstm_onnx.serving.v2_protocol import parse_infer

F = 3


def body(x: np.ndarray, lengths=None, **top) -> tuple[bytes, int]:
    inputs = [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}]
    blob = x.astype("<f4").tobytes()
    if lengths is not None:
        lengths = np.asarray(lengths, "<i4")
        inputs.append({"name": "lengths", "datatype": "INT32", "shape": [len(lengths)],
                       "parameters": {"binary_data_size": lengths.nbytes}})
        blob += lengths.tobytes()
    head = json.dumps({"inputs": inputs, "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
                       **top}).encode()
    return head + blob, len(head)


def parse(raw_and_len) -> v2_protocol.InferRequest:
    return parse_infer(*raw_and_len, F, 8, 20)


def refusal(raw_and_len) -> str:
    with pytest.raises(ApiError) as info:
        parse(raw_and_len)
    return f"{info.value.status} {info.value.message}"


@pytest.fixture(autouse=True)
def no_plans():
    v2_protocol.PLANS.clear()
    yield
    v2_protocol.PLANS.clear()


def test_a_repeated_header_decodes_as_the_first():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4, F)).astype(np.float32), rng.normal(size=(2, 4, F)).astype(np.float32)
    first, second = parse(body(a, [4, 2])), parse(body(b, [1, 3]))
    assert len(v2_protocol.PLANS) == 1
    np.testing.assert_array_equal(first.x, a)
    np.testing.assert_array_equal(second.x, b)
    assert second.lengths.tolist() == [1, 3] and second.outputs == {"y": True} and second.sequence is None
    assert second.largest == float(np.abs(b).max())


def test_a_repeated_header_is_refused_as_the_first():
    x = np.ones((1, 4, F), np.float32)
    parse(body(x, [4]))
    nan = x.copy()
    nan[0, 1, 2] = np.nan
    raw, n = body(x, [4])
    remembered = {"nan": refusal(body(nan, [4])), "lengths": refusal(body(x, [5])), "short": refusal((raw[:-4], n))}
    assert len(v2_protocol.PLANS) == 1
    v2_protocol.PLANS.clear()  # the same bodies through the full path
    assert refusal(body(nan, [4])) == remembered["nan"] and "NaN" in remembered["nan"]
    assert refusal(body(x, [5])) == remembered["lengths"]
    assert refusal((raw[:-4], n)) == remembered["short"] and "needs bytes" in remembered["short"]


def test_headers_that_change_per_request_are_not_remembered():
    x = np.ones((1, 2, F), np.float32)
    parse(body(x, id="r1"))
    parse(body(x, parameters={"sequence_id": 7, "sequence_start": True}))
    assert v2_protocol.PLANS == {}
    assert parse(body(x, id="r2")).id == "r2"


def test_the_plans_are_bounded(monkeypatch):
    monkeypatch.setattr(v2_protocol, "MAX_PLANS", 3)
    for steps in range(1, 8):
        parse(body(np.ones((1, steps, F), np.float32)))
        assert len(v2_protocol.PLANS) <= 3
    v2_protocol.PLANS.clear()
    parse(body(np.ones((1, 2, F), np.float32), padding="." * v2_protocol.MAX_PLAN_HEAD))
    assert v2_protocol.PLANS == {}
