"""The bench's forms come from exporters.forms: every row by default, one export per case for a static-shape
form, one shared export for the others."""
import dataclasses

import onnx
import pytest

from lstm_onnx.bench.cases import Case
from lstm_onnx.bench.models import random_checkpoint
from lstm_onnx.bench.run import BenchConfig, _export_models, _forms
from lstm_onnx.exporters.forms import FORMS

CASES = (Case("one", 1, 1), Case("two", 2, 3))


def test_every_row_by_default_and_unknown_forms_refused():
    assert _forms(BenchConfig()) == list(FORMS)
    assert _forms(BenchConfig(forms=("decomposed",))) == ["decomposed"]
    with pytest.raises(ValueError, match=r"unknown form\(s\) \['fancy'\]"):
        _forms(BenchConfig(forms=("fancy",)))


def test_static_forms_are_exported_per_case(tmp_path, monkeypatch):
    static = dataclasses.replace(FORMS["unrolled"], name="static-twin")
    monkeypatch.setitem(FORMS, "static-twin", static)
    ckpt = random_checkpoint(input_size=3, hidden_size=4)
    config = BenchConfig(cases=CASES)
    paths, errors = _export_models(ckpt, config, _forms(config), tmp_path)
    assert all(not e for e in errors.values()), errors
    for name, form in FORMS.items():
        files = {c.name: paths[name][c.name] for c in CASES}
        if form.static_shapes:
            assert len(set(files.values())) == len(CASES)
            for case in CASES:
                x = onnx.load(files[case.name]).graph.input[0].type.tensor_type.shape.dim
                want = [case.batch, case.seq] if ckpt.model_config.batch_first else [case.seq, case.batch]
                assert [d.dim_value for d in x][:2] == want
        else:
            assert len(set(files.values())) == 1
