"""Every form × layers × directions × peepholes × state against torch, numpy, ORT CPU and onnx.reference."""
import itertools

import numpy as np
import onnx
import pytest

from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.runtimes.verify import verify_checkpoint
from tests.helpers import make_checkpoint

BATCH, SEQ = 3, 6  # the static size of the unrolled exports (and the feeds for every form)
RUNNERS = ("numpy", "onnxruntime-cpu", "onnx-reference")


def form_options(form: str, **kw) -> ExportOptions:
    static = dict(seq_len=SEQ, batch_size=BATCH) if FORMS[form].static_shapes else {}
    return ExportOptions(form=form, **static, **kw)


def rows(report):
    return getattr(report, "parity", report).rows


# (layers, bidirectional, peephole, stateful); stateful only for unidirectional models
MATRIX = [(L, bi, p, st) for L, bi, p, st in itertools.product([1, 2], [False, True], [True, False], [False, True])
          if not (bi and st)]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("layers,bidirectional,peephole,stateful", MATRIX, ids=lambda v: str(v))
def test_form_matches_every_reference(tmp_path, form, layers, bidirectional, peephole, stateful):
    ckpt = make_checkpoint(num_layers=layers, bidirectional=bidirectional, peephole=peephole, dropout=0.3)
    path = tmp_path / "m.onnx"
    model = export_checkpoint(ckpt, path, form_options(form, stateful=stateful))  # validated against torch
    report = verify_checkpoint(ckpt, path, RUNNERS, batch=BATCH, seq=SEQ)
    assert report.passed, report.to_table()
    assert {r.runner for r in rows(report)} == set(RUNNERS)
    assert {o.name for o in model.graph.output} == ({"y", "hn", "cn"} if stateful else {"y"})
    has_lstm = any(n.op_type == "LSTM" for n in model.graph.node)
    assert has_lstm == FORMS[form].lstm_node


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bidirectional,stateful,head,batch_first",
                         [(False, True, "sequence", True), (True, False, "last", False),
                          (True, False, "sequence", True), (False, False, "classify", False)])
def test_lengths_heads_and_layouts(tmp_path, form, bidirectional, stateful, head, batch_first):
    """sequence_lens (masking in decomposed/unrolled), each head, both layouts; onnx.reference runs the
    mask-based forms (no LSTM node) and must agree too."""
    ckpt = make_checkpoint(num_layers=2, bidirectional=bidirectional, head=head, batch_first=batch_first)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, form_options(form, stateful=stateful, lengths=True))
    report = verify_checkpoint(ckpt, path, RUNNERS, batch=BATCH, seq=SEQ, seed=3)
    assert report.passed, report.to_table()
    compared = {r.runner for r in rows(report)}
    # refused only for an LSTM with sequence_lens
    assert ("onnx-reference" in compared) == (FORMS[form].lengths_by == "mask")


def test_unrolled_is_static_and_concats_in_groups(tmp_path):
    ckpt = make_checkpoint(head="sequence")
    model = export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(form="unrolled", seq_len=70, batch_size=2))
    for vi in list(model.graph.input) + list(model.graph.output):
        assert all(d.dim_value > 0 and not d.dim_param for d in vi.type.tensor_type.shape.dim), vi
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert concats and max(len(n.input) for n in concats) <= 32  # ORT CUDA's limit under graph capture
    assert not any(n.op_type in ("Scan", "Loop", "LSTM") for n in model.graph.node)


def test_decomposed_projects_inputs_once_and_scans(tmp_path):
    model = export_checkpoint(make_checkpoint(num_layers=2, bidirectional=True), tmp_path / "m.onnx",
                              ExportOptions(form="decomposed"))
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scans) == 4  # one per layer and direction
    assert sum(n.op_type == "MatMul" for n in model.graph.node) == 4  # x W^T for all steps at once
    body = onnx.helper.get_attribute_value(next(a for a in scans[0].attribute if a.name == "body"))
    ops = [n.op_type for n in body.node]
    assert ops.count("MatMul") == 1 and ops.count("Mul") >= 3 + 3  # recurrent MatMul; peepholes and gates


def test_dropout_is_ignored_at_inference(tmp_path):
    ckpt = make_checkpoint(num_layers=2, dropout=0.5, head_dropout=0.5)
    path = tmp_path / "m.onnx"
    model = export_checkpoint(ckpt, path, ExportOptions(form="decomposed"))
    assert not any(n.op_type == "Dropout" for n in model.graph.node)
    assert verify_checkpoint(ckpt, path, RUNNERS, batch=2, seq=5).passed


def test_batch_first_reads_time_from_axis_one(tmp_path):
    """A reversed time axis must change the answer: the export does not confuse batch and time."""
    import onnxruntime as ort

    ckpt = make_checkpoint(batch_first=True)
    model = export_checkpoint(ckpt, tmp_path / "m.onnx", ExportOptions(form="decomposed"))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    assert not np.allclose(sess.run(None, {"x": x})[0], sess.run(None, {"x": x[:, ::-1].copy()})[0])
