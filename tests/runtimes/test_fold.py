"""The folded streaming step (normalization and NaN/Inf check inside the graph) equals PyTorch and the numpy
path, on every form and head, and refuses bad input without touching the carried state."""
import numpy as np
import pytest

from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.runtimes.embed import Predictor, PredictorError
from lstm_onnx.runtimes.tolerances import default_tolerance
from tests import models

TOL = default_tolerance("float32")
CASES = [("native", "last", True, True), ("decomposed", "sequence", True, True), ("unrolled", "last", True, True),
         ("native", "classify", True, True), ("native", "sequence", False, True), ("native", "last", True, False),
         ("decomposed", "last", True, False)]


def _fold_nodes(blob: bytes) -> set:
    import onnx

    return {n.output[0] for n in onnx.load_from_string(blob).graph.node if n.output[0].startswith("fold.")}


@pytest.mark.parametrize("form,head,batch_first,bias", CASES)
@pytest.mark.parametrize("into_weights", [True, False])
def test_folded_step_equals_torch_and_numpy_path(tmp_path, monkeypatch, form, head, batch_first, bias,
                                                 into_weights):
    from lstm_onnx.runtimes import fold

    if not into_weights:  # the Mul/Add fallback that any other graph gets
        monkeypatch.setattr(fold._Graph, "fold_input", lambda *a: False)
        monkeypatch.setattr(fold._Graph, "fold_output", lambda *a: False)
    ckpt = models.checkpoint(head=head, bias=bias)
    ckpt.config.model.batch_first = batch_first
    extra = dict(seq_len=1, batch_size=2) if FORMS[form].static_shapes else {}
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form=form, stateful=True, **extra))
    pred = Predictor.load(path)
    folded, plain = pred.stream(batch=2), pred.stream(batch=2, fold=False)
    assert folded._folded is not None and plain._folded is None
    blob = fold.fold_normalization(path, pred.meta["normalization"], head != "classify")
    # Our exports take the affine maps into their weights; only a model without an input bias to absorb
    # the shift (decomposed, bias=False) needs nodes on the input side.
    expect_nodes = not into_weights or (not FORMS[form].lstm_node and not bias)
    assert bool(_fold_nodes(blob)) == expect_nodes
    x = np.stack(models.raw_inputs(np.random.default_rng(0), [6, 6]))
    ys = [folded.step(x[:, t]) for t in range(6)]
    for t in range(6):
        np.testing.assert_allclose(ys[t], plain.step(x[:, t]), atol=TOL.atol, rtol=TOL.rtol)
    if batch_first:
        whole = models.torch_reference(ckpt, x)
    else:  # the torch model takes and returns time-major tensors
        whole = models.torch_reference(ckpt, x.transpose(1, 0, 2)).transpose(1, 0, 2)
    last = ys[-1] if head != "sequence" else np.concatenate(ys, axis=1)
    np.testing.assert_allclose(last, whole, atol=TOL.atol, rtol=TOL.rtol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_step_is_refused_and_state_kept(tmp_path, bad):
    ckpt = models.checkpoint()
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, ExportOptions(stateful=True))
    stepper = Predictor.load(path).stream()
    x = models.raw_inputs(np.random.default_rng(1), [3])[0]
    stepper.step(x[None, 0])
    h, c = stepper.h.copy(), stepper.c.copy()
    broken = x[None, 1].copy()
    broken[0, 1] = bad
    with pytest.raises(PredictorError, match="NaN or Inf"):
        stepper.step(broken)
    np.testing.assert_array_equal(stepper.h, h)
    np.testing.assert_array_equal(stepper.c, c)
