"""The hand-written backward is exact: gradcheck in float64, and float32 equals autograd over the equations."""
import pytest
import torch

from lstm_onnx.pipeline.cell import PeepholeLayerFunction, masked_layer


def naive_layer(x, w_ih, w_hh, bias, peep, h, c):
    """The equations, step by step, differentiated by autograd."""
    ys = []
    for t in range(x.shape[0]):
        z = x[t] @ w_ih.T + h @ w_hh.T + (bias if bias is not None else 0)
        z_i, z_f, z_g, z_o = z.chunk(4, 1)
        p_i, p_f, p_o = peep if peep is not None else (0, 0, 0)
        i = torch.sigmoid(z_i + p_i * c)
        f = torch.sigmoid(z_f + p_f * c)
        c = f * c + i * torch.tanh(z_g)
        o = torch.sigmoid(z_o + p_o * c)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def make_args(S, B, I, H, dtype, bias=True, peep=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype).mul_(0.5).requires_grad_()  # noqa: E731
    return [r(S, B, I), r(4 * H, I), r(4 * H, H), r(4 * H) if bias else None, r(3, H) if peep else None,
            r(B, H), r(B, H)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("peep", [True, False])
def test_gradcheck_float64(bias, peep):
    args = make_args(4, 3, 5, 6, torch.float64, bias, peep)
    assert torch.autograd.gradcheck(PeepholeLayerFunction.apply, args)


def test_float32_matches_autograd_of_the_equations():
    args = make_args(20, 8, 16, 32, torch.float32)
    y, h, c = PeepholeLayerFunction.apply(*args)
    loss = (y * torch.linspace(-1, 1, y.shape[-1])).sum() + h.sum() * 0.3 + c.sum() * 0.7
    grads = torch.autograd.grad(loss, [a for a in args if a is not None])
    ref_args = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    y_r, h_r, c_r = naive_layer(*ref_args)
    loss_r = (y_r * torch.linspace(-1, 1, y.shape[-1])).sum() + h_r.sum() * 0.3 + c_r.sum() * 0.7
    ref_grads = torch.autograd.grad(loss_r, [a for a in ref_args if a is not None])
    torch.testing.assert_close(y, y_r, atol=2e-6, rtol=1e-5)
    for g, g_r in zip(grads, ref_grads):
        torch.testing.assert_close(g, g_r, atol=2e-5, rtol=1e-4)


def test_output_gate_peeks_at_the_new_cell():
    """A mutation of the equations (o peeking at c_prev) must give different outputs."""
    args = [a.detach() if a is not None else None for a in make_args(6, 2, 3, 4, torch.float64)]
    y, _, _ = PeepholeLayerFunction.apply(*args)
    x, w_ih, w_hh, bias, peep, h, c = args
    ys = []
    for t in range(x.shape[0]):
        z_i, z_f, z_g, z_o = (x[t] @ w_ih.T + h @ w_hh.T + bias).chunk(4, 1)
        i, f = torch.sigmoid(z_i + peep[0] * c), torch.sigmoid(z_f + peep[1] * c)
        o = torch.sigmoid(z_o + peep[2] * c)  # wrong: the previous cell
        c = f * c + i * torch.tanh(z_g)
        h = o * torch.tanh(c)
        ys.append(h)
    assert (y - torch.stack(ys)).abs().max() > 1e-3


@pytest.mark.parametrize("reverse", [False, True])
def test_masked_layer_full_lengths_equals_unmasked(reverse):
    args = [a.detach() if a is not None else None for a in make_args(7, 3, 4, 5, torch.float64)]
    x = args[0].flip(0) if reverse else args[0]
    y, h, c = PeepholeLayerFunction.apply(x, *args[1:])
    y = y.flip(0) if reverse else y
    y_m, h_m, c_m = masked_layer(*args, lengths=torch.full((3,), 7), reverse=reverse)
    torch.testing.assert_close(y_m, y)
    torch.testing.assert_close(h_m, h)
    torch.testing.assert_close(c_m, c)
