"""Placement in serving: `/v1/model` reports it, a misplaced LSTM is logged loudly, and `serve
--strict-placement` refuses to start. On CPU nothing lands elsewhere, so the LSTM is moved at the factory's seam."""
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.settings import ServeSettings
from tests import models
from tests.placement_fakes import ELSEWHERE, profiled_by_hand


def test_model_info_reports_the_placement(serve_model):
    with TestClient(create_app(ServeSettings(model=str(serve_model)))) as c:
        placement = c.get("/v1/model").json()["placement"]
    h = np.zeros((1, 2, models.H), np.float32)
    by_hand = profiled_by_hand(serve_model, {"x": np.ones((2, 5, models.F), np.float32), "h0": h, "c0": h,
                                             "lengths": np.array([5, 3], np.int32)})
    assert placement == {"requested": "CPUExecutionProvider", "checked": True,
                         "nodes": {"CPUExecutionProvider": len(by_hand)},
                         "lstm": {p.node: p.provider for p in by_hand if p.op_type == "LSTM"}, "problems": []}
    assert placement["lstm"]  # the model has an LSTM node, and it was seen


def test_a_misplaced_lstm_is_logged_and_shown(serve_model, lstm_elsewhere, caplog):
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        app = create_app(ServeSettings(model=str(serve_model)))
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 1 and "LSTM node" in logged[0] and "--form decomposed" in logged[0]
    with TestClient(app) as c:
        placement = c.get("/v1/model").json()["placement"]
        assert c.post("/v1/predict", json={"inputs": [[[1.0, 2.0, 3.0]]]}).status_code == 200  # it still serves
    assert set(placement["lstm"].values()) == {ELSEWHERE} and placement["problems"] == [logged[0][len("placement: "):]]


def test_strict_placement_refuses_to_build_the_app(serve_model, lstm_elsewhere):
    with pytest.raises(ValueError, match="--strict-placement: .*LSTM node .*--form decomposed"):
        create_app(ServeSettings(model=str(serve_model), strict_placement=True))
