"""Tests of the compiled peephole-LSTM kernel (pipeline.fastpath). Skipped when it cannot be built."""
from __future__ import annotations

import pytest
import torch

from lstm_onnx.pipeline import fastpath


@pytest.fixture(scope="module", autouse=True)
def _need_ext():
    if not fastpath.available():
        pytest.skip(f"compiled LSTM kernel unavailable: {fastpath.unavailable_reason()}")


def reference_layer(x, w_ih, w_hh, bias, peep, h0, c0):
    """Naive per-step autograd reference, straight from the equations."""
    H = w_hh.shape[1]
    h, c = h0, c0
    ys = []
    for t in range(x.shape[0]):
        gates = x[t] @ w_ih.t() + h @ w_hh.t()
        if bias is not None:
            gates = gates + bias
        g_i, g_f, g_g, g_o = gates.split(H, dim=1)
        if peep is not None:
            g_i = g_i + peep[0] * c
            g_f = g_f + peep[1] * c
        i = torch.sigmoid(g_i)
        f = torch.sigmoid(g_f)
        g = torch.tanh(g_g)
        c = f * c + i * g
        if peep is not None:
            g_o = g_o + peep[2] * c
        o = torch.sigmoid(g_o)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def make_inputs(S, B, I, H, dtype, with_bias=True, with_peep=True, seed=0, scale=0.4):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=scale):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).to(dtype)

    x = r(S, B, I, s=1.0)
    w_ih = r(4 * H, I)
    w_hh = r(4 * H, H)
    bias = r(4 * H, s=0.2) if with_bias else None
    peep = r(3, H, s=0.5) if with_peep else None
    h0 = r(B, H, s=0.5)
    c0 = r(B, H, s=0.5)
    return [x, w_ih, w_hh, bias, peep, h0, c0]


def _req(tensors):
    return [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]


@pytest.fixture(params=["brgemm", "generic"])
def kernel_path(request):
    """Run float32 tests both through oneDNN brgemm (when usable) and the generic at::mm path."""
    if request.param == "brgemm" and not fastpath._brgemm_active():
        pytest.skip("oneDNN brgemm not usable here; generic path covers float32")
    fastpath._force_generic(request.param == "generic")
    yield request.param
    fastpath._force_generic(False)


@pytest.mark.parametrize("with_peep", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck_float64(with_peep, with_bias):
    inputs = _req(make_inputs(4, 3, 5, 6, torch.float64, with_bias, with_peep))
    assert torch.autograd.gradcheck(fastpath.fused_lstm_layer, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_float64_only_hn_cn_used():
    inputs = _req(make_inputs(3, 2, 4, 5, torch.float64))

    def f(*a):
        _, h_n, c_n = fastpath.fused_lstm_layer(*a)
        return h_n, c_n

    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("with_peep", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_float32_matches_autograd_reference(kernel_path, with_peep, with_bias):
    base = make_inputs(20, 8, 16, 32, torch.float32, with_bias, with_peep, seed=1)
    a = _req(base)
    b = _req(base)
    y, h_n, c_n = fastpath.fused_lstm_layer(*a)
    ry, rh, rc = reference_layer(*b)
    torch.testing.assert_close(y, ry, atol=2e-6, rtol=0)
    torch.testing.assert_close(h_n, rh, atol=2e-6, rtol=0)
    torch.testing.assert_close(c_n, rc, atol=2e-6, rtol=0)

    g = torch.Generator().manual_seed(7)
    gy = torch.randn(y.shape, generator=g)
    gh = torch.randn(h_n.shape, generator=g)
    gc = torch.randn(c_n.shape, generator=g)
    ((y * gy).sum() + (h_n * gh).sum() + (c_n * gc).sum()).backward()
    ((ry * gy).sum() + (rh * gh).sum() + (rc * gc).sum()).backward()
    names = ["x", "w_ih", "w_hh", "bias", "peep", "h0", "c0"]
    for name, ta, tb in zip(names, a, b):
        if ta is None:
            continue
        # Weight grads sum S*B = 160 products; allow float32 reduction-order noise relative to magnitude.
        tol = 2e-6 + 2e-6 * tb.grad.abs().max().item()
        torch.testing.assert_close(ta.grad, tb.grad, atol=tol, rtol=0, msg=lambda m, n=name: f"grad {n}: {m}")


def test_h0_c0_gradients_float32(kernel_path):
    base = make_inputs(5, 4, 6, 16, torch.float32, seed=3)
    a = _req(base)
    b = _req(base)
    fastpath.fused_lstm_layer(*a)[0].sum().backward()
    reference_layer(*b)[0].sum().backward()
    for ta, tb in zip(a[5:], b[5:]):
        assert ta.grad is not None and ta.grad.abs().sum() > 0
        torch.testing.assert_close(ta.grad, tb.grad, atol=2e-6, rtol=0)


@pytest.mark.parametrize("H", [1, 7, 33, 100])
def test_odd_hidden_sizes(kernel_path, H):
    base = make_inputs(3, 5, 4, H, torch.float32, seed=H)
    a = _req(base)
    b = _req(base)
    y = fastpath.fused_lstm_layer(*a)[0]
    ry = reference_layer(*b)[0]
    torch.testing.assert_close(y, ry, atol=2e-6, rtol=0)
    y.sum().backward()
    ry.sum().backward()
    for ta, tb in zip(a, b):
        torch.testing.assert_close(ta.grad, tb.grad, atol=1e-5, rtol=1e-5)


def test_plain_lstm_equals_nn_lstm():
    torch.manual_seed(0)
    S, B, I, H = 12, 4, 9, 24
    lstm = torch.nn.LSTM(I, H)
    x = torch.randn(S, B, I)
    h0 = torch.randn(1, B, H)
    c0 = torch.randn(1, B, H)
    ry, (rh, rc) = lstm(x, (h0, c0))
    with torch.no_grad():
        y, h_n, c_n = fastpath.fused_lstm_layer(x, lstm.weight_ih_l0, lstm.weight_hh_l0,
                                                lstm.bias_ih_l0 + lstm.bias_hh_l0, None, h0[0], c0[0])
    torch.testing.assert_close(y, ry, atol=2e-6, rtol=0)
    torch.testing.assert_close(h_n, rh[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(c_n, rc[0], atol=2e-6, rtol=0)


def test_no_grad_and_outputs_detached():
    base = make_inputs(6, 3, 4, 8, torch.float32, seed=5)
    with torch.no_grad():
        y, h_n, c_n = fastpath.fused_lstm_layer(*_req(base))
    assert not y.requires_grad and not h_n.requires_grad and not c_n.requires_grad
    ry, rh, rc = reference_layer(*base)
    torch.testing.assert_close(y, ry, atol=2e-6, rtol=0)
    torch.testing.assert_close(h_n, y[-1])
    torch.testing.assert_close(c_n, rc, atol=2e-6, rtol=0)


def test_float64_matches_reference():
    base = make_inputs(7, 3, 5, 20, torch.float64, seed=9)
    y, h_n, c_n = fastpath.fused_lstm_layer(*base)
    ry, rh, rc = reference_layer(*base)
    torch.testing.assert_close(y, ry, atol=1e-12, rtol=0)
    torch.testing.assert_close(c_n, rc, atol=1e-12, rtol=0)


def test_peephole_order_matters():
    """Mutation check: swapping p_i and p_o must change the outputs (so the tests can fail)."""
    x, w_ih, w_hh, bias, peep, h0, c0 = make_inputs(10, 4, 6, 16, torch.float32, seed=11)
    peep = torch.stack([peep[0] * 0 + 0.9, peep[1], peep[2] * 0 - 0.9])
    swapped = peep[[2, 1, 0]].contiguous()
    y1 = fastpath.fused_lstm_layer(x, w_ih, w_hh, bias, peep, h0, c0)[0]
    y2 = fastpath.fused_lstm_layer(x, w_ih, w_hh, bias, swapped, h0, c0)[0]
    ry1 = reference_layer(x, w_ih, w_hh, bias, peep, h0, c0)[0]
    assert (y1 - y2).abs().max() > 1e-2
    torch.testing.assert_close(y1, ry1, atol=2e-6, rtol=0)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(y2, ry1, atol=2e-6, rtol=0)


def test_threads_agree():
    """The slice-per-thread split must not change results (1 vs current thread count)."""
    base = make_inputs(8, 6, 10, 64, torch.float32, seed=13)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _req(base)
        y1 = fastpath.fused_lstm_layer(*a)[0]
        y1.sum().backward()
    finally:
        torch.set_num_threads(n)
    b = _req(base)
    y2 = fastpath.fused_lstm_layer(*b)[0]
    y2.sum().backward()
    torch.testing.assert_close(y1, y2, atol=1e-6, rtol=0)
    for ta, tb in zip(a, b):
        torch.testing.assert_close(ta.grad, tb.grad, atol=1e-5, rtol=1e-5)


def test_partial_requires_grad():
    base = make_inputs(4, 2, 3, 8, torch.float64, seed=17)
    x, w_ih, w_hh, bias, peep, h0, c0 = base
    w_hh = w_hh.clone().requires_grad_()
    y = fastpath.fused_lstm_layer(x, w_ih, w_hh, bias, peep, h0, c0)[0]
    y.sum().backward()
    w_hh_ref = w_hh.detach().clone().requires_grad_()
    reference_layer(x, w_ih, w_hh_ref, bias, peep, h0, c0)[0].sum().backward()
    torch.testing.assert_close(w_hh.grad, w_hh_ref.grad, atol=1e-12, rtol=1e-10)


def test_empty_sequence():
    x, w_ih, w_hh, bias, peep, h0, c0 = _req(make_inputs(1, 2, 3, 4, torch.float64, seed=19))
    x0 = x.detach()[:0].clone().requires_grad_()
    y, h_n, c_n = fastpath.fused_lstm_layer(x0, w_ih, w_hh, bias, peep, h0, c0)
    assert y.shape == (0, 2, 4)
    torch.testing.assert_close(h_n, h0.detach())
    torch.testing.assert_close(c_n, c0.detach())
    (h_n.sum() + 2 * c_n.sum()).backward()
    torch.testing.assert_close(h0.grad, torch.ones_like(h0))
    torch.testing.assert_close(c0.grad, 2 * torch.ones_like(c0))
    assert w_hh.grad is not None and w_hh.grad.abs().sum() == 0


@pytest.mark.parametrize("B,H", [(1, 8), (4, 1), (1, 1)])
def test_backward_leaves_the_callers_gradients_alone(kernel_path, B, H):
    """With B or H of 1, dh_n.t().contiguous() is a view of the caller's gradient: the loop must not write into it."""
    a = _req(make_inputs(6, B, 3, H, torch.float32, seed=5))
    y, h_n, c_n = fastpath.fused_lstm_layer(*a)
    gh, gc = torch.randn(h_n.shape), torch.randn(c_n.shape)
    gh_before, gc_before = gh.clone(), gc.clone()
    torch.autograd.backward([y.sum(), h_n, c_n], [None, gh, gc])
    assert torch.equal(gh, gh_before) and torch.equal(gc, gc_before)
