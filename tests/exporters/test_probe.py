"""The probe export: its gate traces agree with the torch reference (pipeline/probe.py) on ONNX Runtime."""
import numpy as np
import onnx
import pytest

from lstm_onnx.core.probe import TRACES, is_probe, trace_name
from lstm_onnx.exporters import decomposed
from lstm_onnx.exporters.export import ExportError, ExportOptions, build_model, export_checkpoint
from lstm_onnx.pipeline.probe import torch_traces
from lstm_onnx.runtimes.gate_stats import onnx_traces
from lstm_onnx.runtimes.tolerances import default_tolerance
from tests.helpers import make_checkpoint

PROBE = ExportOptions(form="decomposed", probe=True)


def _traces_agree(ckpt, tmp_path, x):
    model = export_checkpoint(ckpt, tmp_path / "probe.onnx", PROBE)  # validated like any form
    cfg = ckpt.model_config
    feeds = {"x": x if cfg.batch_first else x.transpose(1, 0, 2).copy()}
    ort = onnx_traces(model.SerializeToString(), feeds)
    ref = torch_traces(ckpt.state_dict, cfg, x)
    assert set(ort) == set(ref)
    tol = default_tolerance("float32")
    for name, value in ref.items():
        np.testing.assert_allclose(ort[name], value, atol=tol.atol, rtol=tol.rtol, err_msg=name)
    return ref


@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(peephole=False, batch_first=True)])
def test_torch_and_ort_traces_agree(tmp_path, kw):
    ckpt = make_checkpoint(seed=3, **kw)
    x = np.random.default_rng(0).standard_normal((3, 9, 3)).astype(np.float32)
    ref = _traces_agree(ckpt, tmp_path, x)
    D = 2 if kw.get("bidirectional") else 1
    assert {trace_name(layer, d, t) for layer in range(kw.get("num_layers", 1)) for d in range(D)
            for t in TRACES} == set(ref)
    if kw.get("peephole") is False:
        assert not np.abs(ref[trace_name(0, 0, "peep_f")]).any()


def test_swapped_gates_in_the_probe_turn_red(tmp_path, monkeypatch):
    monkeypatch.setitem(decomposed.PROBE_TAPS, "i", "f")
    monkeypatch.setitem(decomposed.PROBE_TAPS, "f", "i")
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match=r"probe\.l0\.d0\.[if]"):
        _traces_agree(make_checkpoint(seed=4), tmp_path, x)


def test_probe_outputs_and_refusals():
    ckpt = make_checkpoint()
    model = build_model(ckpt, PROBE)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output if not is_probe(o.name)] == ["y"]
    for bad in (ExportOptions(form="native", probe=True), ExportOptions(form="decomposed", probe=True, lengths=True)):
        with pytest.raises(ExportError, match="--probe"):
            build_model(ckpt, bad)
