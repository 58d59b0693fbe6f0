"""The harness must turn red when an export is wrong: gate order, P order, dropped P — for each form."""
import dataclasses

import onnx
import pytest

from lstm_onnx.core import gates
from lstm_onnx.exporters import export, weights
from lstm_onnx.exporters.export import ExportOptions, build_model
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.runtimes.verify import verify_checkpoint
from tests.helpers import make_checkpoint

RUNNERS = ("numpy", "onnxruntime-cpu", "onnx-reference")
MUTATIONS = {
    "swapped gate order": ("TORCH_TO_ONNX_GATES", (0, 1, 3, 2)),  # f and o exchanged
    "wrong P order": ("TORCH_TO_ONNX_PEEPHOLES", (0, 1, 2)),  # p_f and p_o exchanged
}


def _drop_p(original):
    def layer_weights(*args, **kwargs):
        return dataclasses.replace(original(*args, **kwargs), P=None)
    return layer_weights


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("mutation", list(MUTATIONS) + ["dropped P"])
def test_verify_fails_on_a_broken_export(tmp_path, monkeypatch, form, mutation):
    ckpt = make_checkpoint(num_layers=2)
    options = ExportOptions(form=form, **(dict(seq_len=8, batch_size=4) if FORMS[form].static_shapes else {}))
    path = tmp_path / "m.onnx"
    onnx.save(build_model(ckpt, options), path)
    assert verify_checkpoint(ckpt, path, RUNNERS, batch=4, seq=8).passed  # the unmutated control
    with monkeypatch.context() as m:
        if mutation == "dropped P":
            m.setattr(export, "layer_weights", _drop_p(weights.layer_weights))
        else:
            m.setattr(gates, *MUTATIONS[mutation])
        onnx.save(build_model(ckpt, options), path)  # unvalidated, as a buggy exporter would write it
    report = verify_checkpoint(ckpt, path, RUNNERS, batch=4, seq=8)
    assert not report.passed
    failing = {r.runner for r in getattr(report, "parity", report).rows if not r.passed}
    assert {"onnxruntime-cpu", "onnx-reference"} <= failing  # numpy reads the checkpoint and still agrees


@pytest.mark.parametrize("form", ["decomposed", "unrolled"])
def test_export_refuses_to_write_a_broken_model(tmp_path, monkeypatch, form):
    from lstm_onnx.exporters.export import export_checkpoint
    from lstm_onnx.exporters.validate import ValidationError

    monkeypatch.setattr(gates, *MUTATIONS["wrong P order"])
    options = ExportOptions(form=form, **(dict(seq_len=5, batch_size=2) if FORMS[form].static_shapes else {}))
    with pytest.raises(ValidationError, match="disagrees with PyTorch"):
        export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", options)
    assert not (tmp_path / "m.onnx").exists()
