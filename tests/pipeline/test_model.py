"""PeepholeLSTM against independent references: nn.LSTM (no peepholes) and per-item runs (lengths)."""
import pytest
import torch

from lstm_onnx.pipeline.model import PeepholeLSTM


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_plain_equals_nn_lstm(num_layers, bidirectional, batch_first):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    ours = PeepholeLSTM.from_lstm(ref)
    x = torch.randn(4, 6, 5, requires_grad=True)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), 4 if batch_first else 6, 7)
    out_r, (h_r, c_r) = ref(x, (h0, h0 * 0.5))
    out, (h, c) = ours(x, (h0, h0 * 0.5))
    torch.testing.assert_close(out, out_r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h, h_r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, c_r, atol=1e-6, rtol=1e-5)
    g_r = torch.autograd.grad(out_r.sum() + c_r.sum(), [x, *ref.parameters()])
    g = torch.autograd.grad(out.sum() + c.sum(), [x, *ours.parameters()])
    for a, b in zip(g, g_r):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_peepholes_change_the_output():
    torch.manual_seed(0)
    m = PeepholeLSTM(3, 4)
    x = torch.randn(5, 2, 3)
    y1 = m(x)[0]
    with torch.no_grad():
        m.peephole_l0.zero_()
    assert (m(x)[0] - y1).abs().max() > 1e-3


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_batch_equals_per_item_runs(bidirectional):
    torch.manual_seed(1)
    m = PeepholeLSTM(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True).eval()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    with torch.no_grad():
        out, (h, c) = m(x, lengths=lengths)
        for b, n in enumerate(lengths.tolist()):
            out_b, (h_b, c_b) = m(x[b:b + 1, :n])
            torch.testing.assert_close(out[b, :n], out_b[0])
            assert out[b, n:].abs().max() == 0 if n < 6 else True
            torch.testing.assert_close(h[:, b], h_b[:, 0])
            torch.testing.assert_close(c[:, b], c_b[:, 0])


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected input of shape \[\.\., \.\., 3\]"):
        PeepholeLSTM(3, 4)(torch.randn(2, 5, 4))


def test_from_lstm_keeps_float64():
    torch.manual_seed(2)
    ref = torch.nn.LSTM(3, 5, 2, batch_first=True).double()
    ours = PeepholeLSTM.from_lstm(ref)
    assert {p.dtype for p in ours.parameters()} == {torch.float64}
    assert {p.device for p in ours.parameters()} == {next(ref.parameters()).device}
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    out_r, (h_r, c_r) = ref(x)
    out, (h, c) = ours(x)
    assert out.dtype == torch.float64
    # Tighter than float32 can hold: a float32 copy of the weights is ~1e-8 off, so this bound fails for it.
    torch.testing.assert_close(out, out_r, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c, c_r, atol=1e-12, rtol=1e-12)
    for name, p in ours.named_parameters():
        assert torch.equal(p, ref.state_dict()[name]), name
