"""Stateful streaming (k chunks == one pass) and padded batches (== per-item runs), for every form."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from lstm_onnx.exporters.export import ExportError, ExportOptions, build_model
from lstm_onnx.exporters.forms import FORMS
from tests.helpers import make_checkpoint


def session(ckpt, **options):
    model = build_model(ckpt, ExportOptions(**options))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("form", [name for name, f in FORMS.items() if not f.static_shapes])
def test_chunks_carrying_state_equal_one_pass(form):
    ckpt = make_checkpoint(num_layers=2, head="sequence")
    sess = session(ckpt, form=form, stateful=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 8)).astype(np.float32)
    c0 = rng.standard_normal((2, 2, 8)).astype(np.float32)
    y_all, hn_all, cn_all = sess.run(["y", "hn", "cn"], {"x": x, "h0": h0, "c0": c0})
    h, c, ys = h0, c0, []
    for chunk in np.split(x, [1, 5, 6, 11], axis=1):  # uneven chunks, a one-step one included
        y, h, c = sess.run(["y", "hn", "cn"], {"x": chunk, "h0": h, "c0": c})
        ys.append(y)
    np.testing.assert_allclose(np.concatenate(ys, axis=1), y_all, atol=1e-6)
    np.testing.assert_allclose(h, hn_all, atol=1e-6)
    np.testing.assert_allclose(c, cn_all, atol=1e-6)
    with torch.no_grad():  # and the whole pass is torch's
        y_ref, (h_ref, _) = ckpt.build_model()(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    np.testing.assert_allclose(y_all, y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(hn_all, h_ref.numpy(), atol=1e-5)


def test_unrolled_one_step_streaming_equals_a_whole_pass():
    """The streaming use case: an unrolled seq=1 model stepped 9 times == the decomposed form over 9 steps."""
    ckpt = make_checkpoint(num_layers=2, peephole=True)
    step = session(ckpt, form="unrolled", seq_len=1, batch_size=2, stateful=True)
    whole = session(ckpt, form="decomposed", stateful=True)
    x = np.random.default_rng(1).standard_normal((2, 9, 3)).astype(np.float32)
    h = c = np.zeros((2, 2, 8), np.float32)
    for t in range(9):
        y, h, c = step.run(["y", "hn", "cn"], {"x": x[:, t:t + 1], "h0": h, "c0": c})
    y_all, hn_all = whole.run(["y", "hn"], {"x": x, "h0": np.zeros_like(h), "c0": np.zeros_like(c)})
    np.testing.assert_allclose(y, y_all, atol=1e-6)
    np.testing.assert_allclose(h, hn_all, atol=1e-6)


def test_stateful_bidirectional_is_refused_for_every_form():
    for form in FORMS:
        with pytest.raises(ExportError, match="unidirectional"):
            build_model(make_checkpoint(bidirectional=True),
                        ExportOptions(form=form, stateful=True, seq_len=4 if FORMS[form].static_shapes else None))


def _per_item(ckpt, x, lengths):
    """torch on each item alone, cut to its own length: y [B, S, O] (zero-padded LSTM output), hn, cn."""
    model = ckpt.build_model()
    ys, hs, cs = [], [], []
    with torch.no_grad():
        for b, n in enumerate(lengths):
            y, (h, c) = model(torch.from_numpy(x[b:b + 1, :n]))
            ys.append(y[0].numpy())
            hs.append(h[:, 0].numpy())
            cs.append(c[:, 0].numpy())
    return ys, np.stack(hs, 1), np.stack(cs, 1)


@pytest.mark.parametrize("form", FORMS)
def test_padded_batch_equals_per_item_runs(form):
    ckpt = make_checkpoint(num_layers=2, head="sequence")
    S, lengths = 7, np.array([7, 3, 1, 5], np.int32)
    static = dict(seq_len=S, batch_size=4) if FORMS[form].static_shapes else {}
    sess = session(ckpt, form=form, lengths=True, stateful=True, **static)
    x = np.random.default_rng(2).standard_normal((4, S, 3)).astype(np.float32)
    zeros = np.zeros((2, 4, 8), np.float32)
    y, hn, cn = sess.run(["y", "hn", "cn"], {"x": x, "lengths": lengths, "h0": zeros, "c0": zeros})
    ys, h_ref, c_ref = _per_item(ckpt, x, lengths)
    bias = ckpt.state_dict["head.bias"].numpy()
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(y[b, :n], ys[b], atol=1e-5)
        np.testing.assert_allclose(y[b, n:], np.broadcast_to(bias, y[b, n:].shape), atol=1e-6)  # LSTM out = 0
    np.testing.assert_allclose(hn, h_ref, atol=1e-5)  # each item's own last step
    np.testing.assert_allclose(cn, c_ref, atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_padded_bidirectional_reverse_starts_at_each_items_end(form):
    ckpt = make_checkpoint(bidirectional=True, head="last")
    S, lengths = 6, np.array([2, 6, 4], np.int32)
    static = dict(seq_len=S, batch_size=3) if FORMS[form].static_shapes else {}
    sess = session(ckpt, form=form, lengths=True, **static)
    x = np.random.default_rng(3).standard_normal((3, S, 3)).astype(np.float32)
    y = sess.run(["y"], {"x": x, "lengths": lengths})[0]
    model = ckpt.build_model()
    with torch.no_grad():
        expected = np.concatenate([model(torch.from_numpy(x[b:b + 1, :n]))[0].numpy()
                                   for b, n in enumerate(lengths)])
    np.testing.assert_allclose(y, expected, atol=1e-5)
