"""Saturation and the peephole's share, on traces from the torch reference with crafted weights."""
import numpy as np
import torch

from lstm_onnx.pipeline.probe import torch_traces
from lstm_onnx.runtimes.gate_stats import gate_report, peephole_share, saturation
from tests.helpers import make_checkpoint

X = np.random.default_rng(0).standard_normal((4, 30, 3)).astype(np.float32)


def _report(ckpt):
    return {s.gate: s for s in gate_report(torch_traces(ckpt.state_dict, ckpt.model_config, X), "torch").stats}


def test_forget_bias_of_8_right_saturates_f():
    ckpt = make_checkpoint(seed=1)
    H = ckpt.model_config.hidden_size
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "peephole_l0"):
        ckpt.state_dict[f"lstm.{name}"] = ckpt.state_dict[f"lstm.{name}"] * 0.1
    ckpt.state_dict["lstm.bias_ih_l0"][H:2 * H] = 8.0  # PyTorch's gate order i, f, g, o
    stats = _report(ckpt)
    assert stats["f"].right.min() > 0.99 and stats["f"].mostly_right == H
    assert stats["i"].right.max() < 0.5  # only f was pushed


def test_zero_weights_give_gates_of_one_half_and_no_saturation():
    ckpt = make_checkpoint(seed=2)
    ckpt.state_dict = {k: torch.zeros_like(v) if k.startswith("lstm.") else v for k, v in ckpt.state_dict.items()}
    traces = torch_traces(ckpt.state_dict, ckpt.model_config, X)
    assert (traces["probe.l0.d0.i"] == 0.5).all() and (traces["probe.l0.d0.o"] == 0.5).all()
    for s in _report(ckpt).values():
        assert not s.left.any() and not s.right.any() and s.peephole_share == 0.0


def test_peephole_share_is_zero_without_p_and_positive_with_it():
    ckpt = make_checkpoint(seed=3)
    ckpt.state_dict["lstm.peephole_l0"] = torch.zeros_like(ckpt.state_dict["lstm.peephole_l0"])
    assert all(s.peephole_share == 0.0 for s in _report(ckpt).values())
    assert all(s.peephole_share > 0 for s in _report(make_checkpoint(seed=3)).values())


def test_saturation_and_share_by_hand():
    gate = np.array([[[0.05, 0.5]], [[0.95, 0.5]], [[0.99, 0.91]], [[0.5, 0.09]]])  # [4 steps, 1, 2 units]
    left, right = saturation(gate)
    np.testing.assert_array_equal(left, [0.25, 0.25])
    np.testing.assert_array_equal(right, [0.5, 0.25])
    assert peephole_share(np.array([1.0, -1.0]), np.array([4.0, -4.0])) == 0.25
