"""verify's localisation: the first step and unit outside tolerance, and the gates a dropped P breaks first."""
import numpy as np
import pytest

from lstm_onnx.runtimes.compare import Tolerances
from lstm_onnx.runtimes.localise import gate_departure, measured
from tests.helpers import make_checkpoint

X = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)  # [S, B, F]


def test_first_step_and_unit_outside_tolerance():
    y = np.random.default_rng(1).standard_normal((7, 2, 4))
    bad = y.copy()
    bad[3, 1, 2] += 1e-3
    bad[5, 0, 0] += 1.0
    meta = {"config": {"model": {"head": "sequence", "batch_first": False}}}
    [found] = measured({"y": bad}, {"y": y}, Tolerances(), meta)
    assert (found["step"], found["item"], found["unit"]) == (3, 1, 2) and found["max_abs"] == pytest.approx(1.0)
    assert measured({"y": y}, {"y": y}, Tolerances(), meta) == []


def test_dropped_p_parts_o_at_step_0_then_i_and_f():
    ckpt = make_checkpoint(seed=2)
    gates = gate_departure(ckpt.state_dict, ckpt.model_config, X, 1e-5)
    assert gates["o"]["step"] == 0 and gates["i"]["step"] == gates["f"]["step"] == 1
    assert gate_departure(make_checkpoint(seed=2, peephole=False).state_dict, ckpt.model_config, X, 1e-5) is None


def test_verify_localises_openvino(tmp_path):
    pytest.importorskip("openvino")
    from lstm_onnx.runtimes.verify import VerifyOptions, verify_model
    from tests.models import export

    ckpt = make_checkpoint(seed=3)
    path = export(ckpt, tmp_path / "m.onnx")
    report = verify_model(path, ckpt, VerifyOptions(runners=("openvino-cpu",), seq=9))
    found = report.localisation["openvino-cpu"]
    assert found["measured"][0]["output"] == "y"
    assert found["inferred"]["gates"]["o"]["step"] == 0
    assert "where it departs" in report.to_table() and "localisation" in report.to_dict()
