"""exporters.forms: every fact a Form row states holds in the graph its builder makes, and the option rules
(static shapes, dtypes, --via torch.onnx) read the row."""
import dataclasses
import itertools

import onnx
import pytest

from lstm_onnx.exporters.export import ExportError, ExportOptions, build_model, resolve_options
from lstm_onnx.exporters.forms import AUTO, DTYPES, FORMS, choices, having
from lstm_onnx.exporters.precision import quantize_int8
from lstm_onnx.runtimes import capabilities
from lstm_onnx.runtimes.onnx_graph import all_nodes
from tests.helpers import make_checkpoint


def options_for(name: str, **kw) -> ExportOptions:
    static = dict(seq_len=4, batch_size=2) if FORMS[name].static_shapes else {}
    return ExportOptions(form=name, **static, **kw)


def ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in all_nodes(model.graph)}


def io_dims(model: onnx.ModelProto) -> list:
    return [d for vi in list(model.graph.input) + list(model.graph.output) for d in vi.type.tensor_type.shape.dim]


CASES = [(name, p, lengths, dtype, q) for name, p, lengths, dtype, q
         in itertools.product(FORMS, [True, False], [True, False], DTYPES, [False, True])
         if dtype in FORMS[name].dtypes and not (q and dtype != "float32")]


@pytest.mark.parametrize("name,peepholes,lengths,dtype,quantize", CASES)
def test_needs_are_what_the_built_graph_needs(name, peepholes, lengths, dtype, quantize):
    """Form.needs (what --target is checked against, before anything is built) == the graph's own features."""
    model = build_model(make_checkpoint(peephole=peepholes), options_for(name, lengths=lengths, dtype=dtype))
    if quantize:
        model = quantize_int8(model)
    assert FORMS[name].needs(peepholes, lengths, dtype, quantize) == capabilities.model_features(model)


@pytest.mark.parametrize("name", FORMS)
def test_each_fact_holds_in_the_graph(name):
    form = FORMS[name]
    model = build_model(make_checkpoint(num_layers=2), options_for(name, lengths=True))
    found = ops(model)
    assert ("LSTM" in found) == form.lstm_node
    assert ("Scan" in found) == form.scan
    assert all(not d.dim_param and d.dim_value > 0 for d in io_dims(model)) == form.static_shapes
    lstms = [n for n in all_nodes(model.graph) if n.op_type == "LSTM"]
    by_sequence_lens = bool(lstms) and all(len(n.input) > 4 and n.input[4] == "lengths" for n in lstms)
    assert by_sequence_lens == (form.lengths_by == "sequence_lens")
    if form.cuda_graph_capturable:  # ORT captures static shapes without control flow
        assert form.static_shapes and not found & {"Scan", "Loop", "If"}
    assert form.lstm_layer().__module__ == f"lstm_onnx.exporters.{form.builder}"


@pytest.mark.parametrize("name,dtype", list(itertools.product(FORMS, DTYPES)))
def test_dtypes_are_the_rows(name, dtype):
    options = options_for(name, dtype=dtype)
    if dtype not in FORMS[name].dtypes:
        with pytest.raises(ExportError, match=f"--dtype {dtype} needs --form ") as info:
            resolve_options(make_checkpoint(), options)
        assert info.value.args[0].split("needs --form ")[1].startswith(
            " or ".join(n for n, f in FORMS.items() if dtype in f.dtypes))
        return
    model = build_model(make_checkpoint(), options)
    want = onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.FLOAT
    assert {t.data_type for t in model.graph.initializer if t.data_type in (1, 10)} == {want}


@pytest.mark.parametrize("name", FORMS)
def test_static_options_follow_static_shapes(name):
    ckpt = make_checkpoint()
    if FORMS[name].static_shapes:
        with pytest.raises(ExportError, match=f"--form {name} needs --seq-len"):
            resolve_options(ckpt, ExportOptions(form=name))
        assert resolve_options(ckpt, ExportOptions(form=name, seq_len=3)).batch_size == 1
    else:
        with pytest.raises(ExportError, match=f"only apply to --form {having('static_shapes')}"):
            resolve_options(ckpt, ExportOptions(form=name, seq_len=3))


@pytest.mark.parametrize("name", FORMS)
def test_via_torch_onnx_follows_the_row(name):
    options = options_for(name, via="torch.onnx")
    if FORMS[name].via_torch_onnx:
        assert resolve_options(make_checkpoint(), options).via == "torch.onnx"
    else:
        with pytest.raises(ExportError, match="--via torch.onnx makes the native float32 form only"):
            resolve_options(make_checkpoint(), options)


def test_a_new_row_is_a_new_form(monkeypatch):
    """Adding a row (here a twin of decomposed) is all it takes to export it; auto stays a keyword."""
    twin = dataclasses.replace(FORMS["decomposed"], name="twin", summary="decomposed again")
    monkeypatch.setitem(FORMS, "twin", twin)
    assert choices()[-2:] == ["twin", AUTO]
    model = build_model(make_checkpoint(), ExportOptions(form="twin"))
    assert "Scan" in ops(model) and "LSTM" not in ops(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["lstm_onnx.form"] == "twin"
    with pytest.raises(ExportError, match="unknown form 'triplet'"):
        build_model(make_checkpoint(), ExportOptions(form="triplet"))


def test_every_fallback_of_the_table_is_a_form():
    assert {rt.fallback for rt in capabilities.RUNTIMES.values()} <= set(FORMS)
    assert AUTO not in FORMS
