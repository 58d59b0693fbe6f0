"""The export rewritten for Triton (raw I/O, batch-first x, y and state) equals PyTorch on every form, head and
layout, obeys the START/READY sequence controls, and says which models ORT's CUDA LSTM cannot run."""
import numpy as np
import onnxruntime as ort
import pytest

from lstm_onnx.core import metadata
from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.triton_graph import triton_model
from tests import models

TOL = default_tolerance("float32")
CASES = [("native", "last", True, False), ("native", "sequence", False, True), ("decomposed", "classify", True, True),
         ("decomposed", "sequence", False, False), ("native", "classify", False, True)]


@pytest.mark.parametrize("form,head,batch_first,stateful", CASES)
def test_rewritten_model_equals_torch(tmp_path, form, head, batch_first, stateful):
    ckpt = models.checkpoint(head=head)
    ckpt.config.model.batch_first = batch_first
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form=form, stateful=stateful))
    model, spec = triton_model(path)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.stack(models.raw_inputs(np.random.default_rng(3), [5, 5, 5]))  # [B, S, F] whatever the export's layout
    feeds = {"x": x}
    if stateful:  # controls off (START=0, READY=1) from zero state
        zeros, ones = np.zeros((3, 1, models.H), np.float32), np.ones((3, 1), np.int32)
        feeds.update(h0=zeros, c0=zeros, START=0 * ones, READY=ones)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    if batch_first:
        want = models.torch_reference(ckpt, x)
    else:  # the torch model is time-major then; a sequence head's y comes back [S, B, O]
        want = models.torch_reference(ckpt, x.transpose(1, 0, 2))
        want = want.transpose(1, 0, 2) if head == "sequence" else want
    np.testing.assert_allclose(out["y"], want, atol=TOL.atol, rtol=TOL.rtol)
    assert set(out) == ({"y", "hn", "cn"} if stateful else {"y"})  # the fold's NaN-check output is gone
    if stateful:
        assert out["hn"].shape == out["cn"].shape == (3, 1, models.H)
        assert spec.states == (("h0", "hn", (1, models.H)), ("c0", "cn", (1, models.H)))
        assert spec.controls == (("START", "CONTROL_SEQUENCE_START"), ("READY", "CONTROL_SEQUENCE_READY"))
        _check_controls(session, feeds, out, want)
    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    assert meta["normalization"] is None  # folded in: a reader of the metadata must not apply it again


def _check_controls(session, feeds: dict, plain: dict, want: np.ndarray) -> None:
    """START=1 starts from zero state whatever comes in (y as from zeros); READY=0 (row 1) hands h/c back
    unchanged, the other rows' hn/cn are the ones computed."""
    state = np.random.default_rng(4).normal(0, 1, (3, 1, models.H)).astype(np.float32)
    ready = np.array([[1], [0], [1]], np.int32)
    run = {**feeds, "h0": state, "c0": 2 * state, "START": np.ones((3, 1), np.int32), "READY": ready}
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, run)))
    np.testing.assert_allclose(out["y"], want, atol=TOL.atol, rtol=TOL.rtol)
    for h_in, h_out in (("h0", "hn"), ("c0", "cn")):
        np.testing.assert_array_equal(out[h_out][1], run[h_in][1])
        np.testing.assert_allclose(out[h_out][[0, 2]], plain[h_out][[0, 2]], atol=TOL.atol, rtol=TOL.rtol)


@pytest.mark.parametrize("opts,peepholes", [(dict(form="native"), True), (dict(form="decomposed"), False),
                                            (dict(form="native", quantize="int8"), True),
                                            (dict(form="auto", target="ort-cuda"), False)])
def test_native_lstm_with_p_is_flagged(tmp_path, opts, peepholes):
    path = tmp_path / "m.onnx"
    export_checkpoint(models.checkpoint(), path, ExportOptions(**opts))
    assert triton_model(path)[1].peepholes is peepholes


def test_a_model_without_peepholes_is_not_flagged(tmp_path):
    from tests.helpers import make_checkpoint

    path = tmp_path / "m.onnx"
    export_checkpoint(make_checkpoint(peephole=False), path, ExportOptions(form="native"))
    assert triton_model(path)[1].peepholes is False
