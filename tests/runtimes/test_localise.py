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
    [from_y] = [m for m in found["measured"] if m["output"] == "Y of LSTM node 0"]  # measured, on the runner
    assert (from_y["direction"], from_y["step"]) == (0, 0)
    assert "where it departs" in report.to_table() and "localisation" in report.to_dict()


def test_probe_traces_locate_the_first_gate_in_the_order_it_is_computed():
    from lstm_onnx.core.probe import trace_name
    from lstm_onnx.runtimes.localise import first_gate, to_lines

    rng = np.random.default_rng(4)
    ref = {trace_name(0, d, g): rng.uniform(0.1, 0.9, (7, 2, 4)) for d in (0, 1) for g in ("i", "f", "o")}
    bad = {k: v.copy() for k, v in ref.items()}
    bad[trace_name(0, 0, "i")][4, 0, 1] += 0.5
    bad[trace_name(0, 0, "f")][2, 1, 3] += 0.5  # forward: f at step 2 comes before i at step 4
    bad[trace_name(0, 1, "o")][[1, 5], 0, 0] += 0.5  # reverse: step 5 runs before step 1
    found = {m["output"]: m for m in measured(bad, ref, Tolerances(), {})}
    assert set(found) == {trace_name(0, 0, "i"), trace_name(0, 0, "f"), trace_name(0, 1, "o")}
    f = found[trace_name(0, 0, "f")]
    assert (f["layer"], f["direction"], f["gate"], f["step"], f["item"], f["unit"]) == (0, 0, "f", 2, 1, 3)
    assert found[trace_name(0, 1, "o")]["step"] == 5
    assert first_gate(list(found.values())) is f
    line = to_lines({"r": {"measured": list(found.values())}})[-1]
    assert line == "r departs first at layer 0, direction 0, gate f, step 2 (item 1, unit 3)"


def test_verify_locates_the_gate_of_a_runner_on_the_probe_form(tmp_path, monkeypatch):
    """A probe whose i and f taps are swapped (y is still right) against the right probe's saved outputs: the
    first gate outside tolerance is i at step 0."""
    from lstm_onnx.exporters import decomposed
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
    from lstm_onnx.runtimes.localise import first_gate
    from lstm_onnx.runtimes.verify import VerifyOptions, verify_model

    ckpt, probe = make_checkpoint(seed=5), ExportOptions(form="decomposed", probe=True)
    export_checkpoint(ckpt, tmp_path / "good.onnx", probe)
    verify_model(tmp_path / "good.onnx", None, VerifyOptions(runners=("onnx-reference",), seq=6,
                                                             save_inputs=str(tmp_path / "in.npz"),
                                                             save_outputs=str(tmp_path / "out.npz")))
    monkeypatch.setitem(decomposed.PROBE_TAPS, "i", "f")
    monkeypatch.setitem(decomposed.PROBE_TAPS, "f", "i")
    export_checkpoint(ckpt, tmp_path / "swapped.onnx", probe)
    report = verify_model(tmp_path / "swapped.onnx", None,
                          VerifyOptions(runners=("onnxruntime-cpu",), inputs=str(tmp_path / "in.npz"),
                                        expected=str(tmp_path / "out.npz")))
    found = report.localisation["onnxruntime-cpu"]["measured"]
    assert {m["output"] for m in found} == {"probe.l0.d0.i", "probe.l0.d0.f"}  # y and the rest agree
    first = first_gate(found)
    assert (first["gate"], first["step"]) == ("i", 0)
    assert "departs first at layer 0, direction 0, gate i, step 0" in report.to_table()


def test_y_departures_per_direction_in_the_order_each_runs():
    from lstm_onnx.runtimes.localise import Y_PREFIX, y_departures

    ref = {f"{Y_PREFIX}0": np.random.default_rng(6).standard_normal((7, 2, 3, 4))}  # [S, D, B, H]
    bad = {k: v.copy() for k, v in ref.items()}
    bad[f"{Y_PREFIX}0"][[2, 5], 0, 1, 3] += 1.0
    bad[f"{Y_PREFIX}0"][[1, 4], 1, 0, 2] += 1.0  # the reverse direction meets step 4 first
    found = y_departures(bad, ref, Tolerances().default)
    assert [(m["direction"], m["step"], m["item"], m["unit"]) for m in found] == [(0, 2, 1, 3), (1, 4, 0, 2)]
    assert y_departures(ref, ref, Tolerances().default) == []


def test_with_lstm_y_exposes_every_lstm_nodes_y(tmp_path):
    import onnx
    import onnxruntime as ort

    from lstm_onnx.runtimes.localise import Y_PREFIX, with_lstm_y
    from tests.models import export

    ckpt = make_checkpoint(seed=7, num_layers=2)
    model = with_lstm_y(onnx.load(export(ckpt, tmp_path / "m.onnx")))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(8).standard_normal((2, 5, ckpt.model_config.input_size)).astype(np.float32)
    x = x if ckpt.model_config.batch_first else x.transpose(1, 0, 2).copy()
    names = [o.name for o in sess.get_outputs()]
    ys = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))
    assert [n for n in names if n.startswith(Y_PREFIX)] == [f"{Y_PREFIX}0", f"{Y_PREFIX}1"]
    assert ys[f"{Y_PREFIX}0"].shape == (5, 1, 2, ckpt.model_config.hidden_size)


def test_a_probe_export_verifies_against_its_checkpoint_on_the_outputs_torch_has(tmp_path):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
    from lstm_onnx.runtimes.verify import VerifyOptions, verify_model

    ckpt = make_checkpoint(seed=6)
    export_checkpoint(ckpt, tmp_path / "p.onnx", ExportOptions(form="decomposed", probe=True))
    report = verify_model(tmp_path / "p.onnx", ckpt, VerifyOptions(runners=("onnxruntime-cpu",), seq=5))
    assert {r.output for r in report.parity.rows} == {"y"} and report.exit_code == 0
    assert any("computes no gate traces" in w for w in report.parity.warnings)
