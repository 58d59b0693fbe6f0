"""bench/measure_capabilities: one model per feature, each cell measured against the float64 numpy reference,
and a stored cell that the measurement contradicts shows as a difference."""
import dataclasses

import numpy as np
import pytest

from lstm_onnx.bench import measure_capabilities as mc
from lstm_onnx.runtimes import capabilities as cap
from lstm_onnx.runtimes.base import Runner

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"


@pytest.mark.parametrize("cpuinfo, isa", [(AVX2_ONLY, "avx2"), (VNNI, "avx512_vnni"),
                                          (AVX2_ONLY.replace("avx2", "avx2 avx_vnni"), "avx_vnni"),
                                          ("processor\t: 0\nflags\t\t: fpu sse2\n", "no avx2")])
def test_the_int8_instruction_set_is_read_from_the_cpu_flags(tmp_path, cpuinfo, isa):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert mc.int8_isa(tmp_path / "cpuinfo") == isa


def test_without_x86_flags_the_machine_type_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(mc.platform, "machine", lambda: "aarch64")
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert mc.int8_isa(tmp_path / "cpuinfo") == "aarch64"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.mark.parametrize("stateful", [False, True])
@pytest.mark.parametrize("feature", list(cap.FEATURES))
def test_each_model_needs_exactly_its_feature(folder, feature, stateful):
    fm = mc.build_feature_model(feature, folder, stateful)
    import onnx

    assert cap.model_features(onnx.load(fm.path)) == [feature]
    assert set(fm.expected) == ({"y", "hn", "cn"} if stateful or feature == "layout_1" else {"y"})
    assert set(fm.feeds) >= {"x"} | ({"h0", "c0"} if stateful else set())


class Fixed(Runner):
    """A runner that returns given outputs, or raises."""

    name = "fixed"

    def __init__(self, outputs=None, error=None):
        super().__init__()
        self.outputs, self.error = outputs, error

    def _input_names(self):
        return ["x", "h0", "c0"]

    def _infer(self, feeds):
        if self.error:
            raise self.error
        return self.outputs


@pytest.fixture(scope="module")
def peepholes(folder):
    return mc.build_feature_model("peepholes", folder, stateful=True)


def test_a_cell_is_yes_wrong_or_refused_by_what_the_runtime_returns(peepholes):
    exact = {k: v.astype(np.float32) for k, v in peepholes.expected.items()}
    assert mc.measure_cell("fixed", peepholes, Fixed(exact)).value == cap.YES
    off = dict(exact, cn=exact["cn"] + 1e-3)
    cell = mc.measure_cell("fixed", peepholes, Fixed(off))
    assert cell.value == cap.WRONG and "cn outside tolerance" in cell.detail
    cell = mc.measure_cell("fixed", peepholes, Fixed(error=RuntimeError("no kernel for LSTM\nmore")))
    assert (cell.value, cell.detail) == (cap.REFUSED, "RuntimeError: no kernel for LSTM")


def test_the_reference_sees_a_dropped_p(peepholes, folder):
    """ORT on the same weights with P zeroed: what a runtime that drops P returns must measure wrong."""
    import onnx

    from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

    model = onnx.load(peepholes.path)
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    p = next(i for i in model.graph.initializer if i.name == lstm.input[7])
    p.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(onnx.numpy_helper.to_array(p)), p.name))
    onnx.save(model, folder / "p-dropped.onnx")
    assert mc.measure_cell("onnxruntime-cpu", peepholes).value == cap.YES
    dropped = mc.measure_cell("onnxruntime-cpu", peepholes, OnnxRuntimeRunner(folder / "p-dropped.onnx"))
    assert dropped.value == cap.WRONG


def test_a_flipped_stored_cell_shows_as_a_difference():
    measured = mc.measure(["onnxruntime-cpu"], ["peepholes", "layout_1"])
    cells = measured["onnxruntime-cpu"].cells
    assert {f: c.value for f, c in cells.items()} == {"peepholes": cap.YES, "layout_1": cap.REFUSED}
    assert mc.differences(measured) == []
    row = cap.RUNTIMES["onnxruntime-cpu"]
    flipped = dict(cap.RUNTIMES, **{"onnxruntime-cpu": dataclasses.replace(row, peepholes=cap.WRONG,
                                                                           layout_1=cap.YES)})
    found = mc.differences(measured, flipped)
    assert [(d.feature, d.stored, d.measured) for d in found] == [("peepholes", cap.WRONG, cap.YES),
                                                                  ("layout_1", cap.YES, cap.REFUSED)]
    assert found[1].line().startswith("onnxruntime-cpu: LSTM layout=1: stored yes, measured refused (")
    assert "Batchwise" in found[1].detail  # ORT's own reason, in the cell


def test_the_measured_rows_carry_the_installed_version_and_isa():
    import onnxruntime

    measured = mc.measure(["onnxruntime-cpu"], ["int8"])
    row = mc.as_rows(measured)["onnxruntime-cpu"]
    assert row.measured_on == f"onnxruntime {onnxruntime.__version__}" and row.int8_isa == mc.int8_isa()
    assert row.int8 == cap.YES and row.peepholes == cap.RUNTIMES["onnxruntime-cpu"].peepholes  # not measured


@pytest.mark.slow
def test_every_installed_runtime_measures_as_the_stored_table_says():
    measured = mc.measure()
    assert {"onnxruntime-cpu", "onnx-reference"} <= set(measured)
    assert all(set(m.cells) == set(cap.FEATURES) for m in measured.values())
    assert mc.differences(measured) == [], mc.report(measured)


def test_a_refusal_is_measured_without_the_runtimes_own_log_line(capfd):
    """ORT logs `[E:onnxruntime:...] ... Batchwise ...` as it refuses; the cell already holds that reason."""
    capfd.readouterr()
    cell = mc.measure(["onnxruntime-cpu"], ["layout_1"])["onnxruntime-cpu"].cells["layout_1"]
    assert cell.value == cap.REFUSED and "Batchwise" in cell.detail
    assert capfd.readouterr().err == ""
