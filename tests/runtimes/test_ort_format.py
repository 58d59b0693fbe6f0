"""convert: ONNX Runtime's format (.ort) and offline-optimized ONNX. Each form's .ort verifies against PyTorch,
the required-operators config lists exactly the ops the converted graph holds, a level that moves the outputs
is refused with nothing written, and Predictor and verify read .ort files."""
import numpy as np
import onnx
import pytest

from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes import ort_file, ort_format
from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.ort_format import ConversionError, convert, graph_ops, read_config
from lstm_onnx.runtimes.verify import PASSED, VerifyOptions, verify_model
from tests import models
from tests.helpers import make_checkpoint

FORMS = {"native": {}, "decomposed": {}, "unrolled": dict(seq_len=23, batch_size=4)}


def export(tmp_path, form="native", ckpt=None, **options):
    path = tmp_path / f"{form}.onnx"
    export_checkpoint(ckpt or make_checkpoint(head="sequence", num_layers=2), path,
                      ExportOptions(form=form, stateful=True, lengths=True, **FORMS[form], **options))
    return path


@pytest.mark.parametrize("level", ["basic", "all"])
@pytest.mark.parametrize("form", FORMS)
def test_each_forms_ort_file_verifies_against_pytorch(tmp_path, form, level):
    ckpt = make_checkpoint(head="sequence", num_layers=2)
    done = convert(export(tmp_path, form, ckpt), tmp_path / "m.ort", level)
    assert ort_file.is_ort_format(tmp_path / "m.ort") and not ort_file.is_ort_format(tmp_path / f"{form}.onnx")
    report = verify_model(tmp_path / "m.ort", ckpt, VerifyOptions(runners=("onnxruntime-cpu", "numpy")))
    rows = report.parity.rows
    assert report.status == PASSED and {r.runner for r in rows} == {"onnxruntime-cpu", "numpy"}, report.to_table()
    assert {r.output for r in rows} == {"y", "hn", "cn"}
    assert max(done.max_abs_diff.values()) <= done.tolerance["atol"]


@pytest.mark.parametrize("form", FORMS)
def test_the_required_operators_config_lists_exactly_the_ops_used(tmp_path, form):
    source = export(tmp_path, form)
    done = convert(source, tmp_path / "m.ort", "disabled")  # nothing fused: the source's own ops
    assert done.config == str(tmp_path / "m.required_operators.config")
    assert read_config(done.config) == graph_ops(onnx.load(source))
    optimized = convert(source, tmp_path / "opt.ort", "extended")  # fused: the ops of the same level's ONNX twin
    twin = convert(source, tmp_path / "opt.onnx", "extended")
    assert twin.config is None and read_config(optimized.config) == graph_ops(onnx.load(tmp_path / "opt.onnx"))


def test_a_level_that_moves_the_outputs_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    source = export(tmp_path)
    real = ort_format._run
    calls = []

    def drifting(session, feeds):  # the second run is the converted model's: shift it by 1e-3
        out = real(session, feeds)
        calls.append(1)
        return {k: v + np.float32(1e-3) for k, v in out.items()} if len(calls) == 2 else out

    monkeypatch.setattr(ort_format, "_run", drifting)
    with pytest.raises(ConversionError, match="changes output.*beyond"):
        convert(source, tmp_path / "m.ort", "all")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["native.onnx"]


def test_predictor_streams_an_ort_file_like_the_onnx_one(tmp_path):
    source = models.export(models.checkpoint(), tmp_path / "m.onnx", stateful=True, lengths=True)
    convert(source, tmp_path / "m.ort", "extended")
    x = models.raw_inputs(np.random.default_rng(0), [9])[0]
    from_onnx, from_ort = Predictor.load(source).stream(), Predictor.load(tmp_path / "m.ort").stream()
    for frame in x:
        np.testing.assert_allclose(from_ort.step(frame[None]), from_onnx.step(frame[None]), atol=1e-5, rtol=1e-5)
    batch = np.stack([x, x[::-1]])
    np.testing.assert_allclose(Predictor.load(tmp_path / "m.ort").predict(batch, lengths=[9, 4]),
                               Predictor.load(source).predict(batch, lengths=[9, 4]), atol=1e-5, rtol=1e-5)


def test_verify_refuses_an_ort_file_without_a_reference(tmp_path):
    convert(export(tmp_path), tmp_path / "m.ort")
    with pytest.raises(ValueError, match="ORT format.*checkpoint"):
        verify_model(tmp_path / "m.ort")


def test_an_ort_file_is_not_converted_again(tmp_path):
    convert(export(tmp_path), tmp_path / "m.ort")
    with pytest.raises(ConversionError, match="already in ORT format"):
        convert(tmp_path / "m.ort", tmp_path / "again.ort")
