"""The gate-order conversion, checked against hand-labelled blocks."""
import numpy as np

from lstm_onnx.core.gates import reorder_gates, reorder_peepholes
from lstm_onnx.exporters.weights import layer_weights


def test_gates_go_from_ifgo_to_iofc():
    H = 2
    labels = np.repeat(np.array([1, 2, 3, 4]), H)[:, None]  # PyTorch blocks: i=1 f=2 g=3 o=4
    assert reorder_gates(labels).ravel().tolist() == [1, 1, 4, 4, 2, 2, 3, 3]  # ONNX: i, o, f, c(=g)


def test_peepholes_go_from_ifo_rows_to_iof():
    peep = np.array([[1, 1], [2, 2], [3, 3]])  # rows p_i, p_f, p_o
    assert reorder_peepholes(peep).tolist() == [1, 1, 3, 3, 2, 2]  # ONNX P = [p_i, p_o, p_f]


def test_layer_weights_shapes_and_bias_halves():
    H, I = 3, 2
    sd = {}
    for sfx in ("_l0", "_l0_reverse"):
        sd["lstm.weight_ih" + sfx] = np.ones((4 * H, I))
        sd["lstm.weight_hh" + sfx] = np.ones((4 * H, H))
        sd["lstm.bias_ih" + sfx] = np.full(4 * H, 1.0)
        sd["lstm.bias_hh" + sfx] = np.full(4 * H, 2.0)
        sd["lstm.peephole" + sfx] = np.ones((3, H))
    w = layer_weights(sd, 0, 2)
    assert w.W.shape == (2, 4 * H, I) and w.R.shape == (2, 4 * H, H)
    assert w.B.shape == (2, 8 * H) and w.P.shape == (2, 3 * H) and w.W.dtype == np.float32
    assert w.B[0, :4 * H].tolist() == [1.0] * 4 * H and w.B[0, 4 * H:].tolist() == [2.0] * 4 * H
