"""What onnxruntime's integer GEMM computes on each x86 instruction set, in numpy, and a quantized model run on it.

onnxruntime (MLAS) multiplies u8 activations by s8 weights in one of two ways:
- "avx2" (AVX2, and AVX-512BW without VNNI): VPMADDUBSW adds each adjacent pair of u8*s8 products into an int16
  lane with saturation, then VPMADDWD against ones sums those int16 lanes into int32. A pair sum outside
  [-32768, 32767] is clipped: 2*255*127 = 64770 can be, 2*255*64 = 32640 (7-bit weights) cannot.
- "vnni" (AVX512_VNNI, AVX_VNNI): VPDPBUSD sums the products straight into int32, exactly.
u8 weights take MLAS's u8*u8 kernel, which widens to int16 first and is exact on both. The zero-point
corrections (row and column sums) are exact integer arithmetic on both.

`run_quantized` evaluates a quantize_dynamic model (DynamicQuantizeLinear + MatMulInteger, com.microsoft
DynamicQuantizeLSTM) with onnx.reference and these kernels, so any machine can see what another ISA computes.
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.core import machine

from lstm_onnx.runtimes.base import Runner

ISAS = ("vnni", "avx2")
INT16_MIN, INT16_MAX = -32768, 32767
_ROWS_PER_CHUNK = 256  # bounds the [rows, K/2, N] pair-sum buffer


def host_isa(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """Which path onnxruntime's u8*s8 GEMM takes on this CPU: "vnni" (exact), "avx2", or None where the flags
    cannot be read (not Linux on x86)."""
    return machine.int8_path(machine.cpu_info(cpuinfo)["isa"])


def pair_sums_saturated(a_u8: np.ndarray, b_s8: np.ndarray) -> np.ndarray:
    """VPMADDUBSW then VPMADDWD: sum over k of a[m, k] * b[k, n], adding products in adjacent pairs of k
    clipped to int16, then summing the pairs in int32. a [M, K] uint8, b [K, N] int8 -> int32 [M, N]."""
    a, b = a_u8.astype(np.int32), b_s8.astype(np.int32)
    if a.shape[1] % 2:  # the packers pad K with a zero
        a, b = np.pad(a, ((0, 0), (0, 1))), np.pad(b, ((0, 1), (0, 0)))
    out = np.empty((a.shape[0], b.shape[1]), np.int32)
    for s in range(0, a.shape[0], _ROWS_PER_CHUNK):
        pairs = (a[s:s + _ROWS_PER_CHUNK, 0::2, None] * b[None, 0::2]
                 + a[s:s + _ROWS_PER_CHUNK, 1::2, None] * b[None, 1::2])
        out[s:s + _ROWS_PER_CHUNK] = np.clip(pairs, INT16_MIN, INT16_MAX).sum(axis=1, dtype=np.int32)
    return out


def integer_gemm(a_u8: np.ndarray, a_zp, b: np.ndarray, b_zp, isa: str) -> np.ndarray:
    """sum_k (a[m, k] - a_zp) * (b[k, n] - b_zp[n]) in int32, as `isa` computes it (a [M, K], b [K, N])."""
    if isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; known: {', '.join(ISAS)}")
    a32, b32 = a_u8.astype(np.int32), b.astype(np.int32)
    if isa == "avx2" and b.dtype == np.int8:
        raw = pair_sums_saturated(a_u8, b)
    else:
        raw = a32 @ b32
    a_zp, b_zp = np.int32(a_zp), np.asarray(b_zp, np.int32).reshape(-1)
    return (raw - a_zp * b32.sum(axis=0) - a32.sum(axis=1, keepdims=True) * b_zp
            + a_u8.shape[1] * a_zp * b_zp).astype(np.int32)


def quantize_activations(x: np.ndarray):
    """DynamicQuantizeLinear (and MLAS's GetQuantizationParameter): u8, range widened to hold 0."""
    lo, hi = min(float(x.min(initial=0.0)), 0.0), max(float(x.max(initial=0.0)), 0.0)
    scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
    zp = np.uint8(np.clip(np.rint(np.float32(0.0) - np.float32(lo) / scale), 0, 255))
    q = np.clip(np.rint(x.astype(np.float32) / scale) + np.float32(zp), 0, 255).astype(np.uint8)
    return q, scale, zp


def quantized_matmul(x: np.ndarray, w_q: np.ndarray, w_scale, w_zp, isa: str) -> np.ndarray:
    """float x [M, K] times a quantized weight [K, N]: one activation scale for all of x, as ORT takes it."""
    q, scale, zp = quantize_activations(x)
    acc = integer_gemm(q, zp, w_q, w_zp, isa)
    return acc.astype(np.float32) * (scale * np.asarray(w_scale, np.float32).reshape(-1))


def widest_pair_sum(model) -> int | None:
    """The largest |a*w + a*w| (a a u8 activation) that the s8 weights of `model`'s integer GEMMs allow; above
    INT16_MAX a CPU without VNNI can saturate. None if the model has no s8-weight integer GEMM."""
    from onnx import numpy_helper

    from lstm_onnx.runtimes.onnx_graph import all_nodes

    inits = {t.name: t for t in model.graph.initializer}
    weights = [name for node in all_nodes(model.graph) for k, name in enumerate(node.input)
               if (node.op_type, k) in {("MatMulInteger", 1), ("DynamicQuantizeLSTM", 1), ("DynamicQuantizeLSTM", 2)}]
    widest = [int(np.abs(numpy_helper.to_array(inits[w]).astype(np.int32)).max(initial=0))
              for w in weights if w in inits and inits[w].data_type == 3]  # TensorProto.INT8
    return 2 * 255 * max(widest) if widest else None


def _sigmoid(z):
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _reverse_each(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """x [S, B, ...] with each item's first lengths[b] steps reversed (ORT's ReverseSequence)."""
    out = x.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = x[:n, b][::-1]
    return out


def quantized_lstm_direction(x, w_q, w_scale, r_q, r_scale, bias, peep, h, c, lengths, reverse, isa):
    """One direction of DynamicQuantizeLSTM as ORT runs it (gates i, o, f, c; P i, o, f): x's projection is one
    quantized GEMM over every step < max(lengths), h's is one per step over the whole batch (ORT with one
    intra-op thread; more threads split the batch, each part with its own scale). Returns y [S, B, H], h, c."""
    S, B, _ = x.shape
    H = h.shape[1]
    steps = int(lengths.max(initial=0))
    xs = _reverse_each(x, lengths) if reverse else x
    proj = np.zeros((S, B, 4 * H), np.float32)
    if steps:
        proj[:steps] = quantized_matmul(xs[:steps].reshape(steps * B, -1), w_q, w_scale, 0, isa
                                        ).reshape(steps, B, 4 * H)
    p_i, p_o, p_f = peep
    y = np.zeros((S, B, H), np.float32)
    prev = h
    for t in range(steps):
        z = proj[t] + quantized_matmul(prev, r_q, r_scale, 0, isa) + bias
        z_i, z_o, z_f, z_c = np.split(z, 4, axis=1)
        i = _sigmoid(z_i + p_i * c)
        f = _sigmoid(z_f + p_f * c)
        c_new = f * c + i * np.tanh(z_c)
        o = _sigmoid(z_o + p_o * c_new)
        h_new = o * np.tanh(c_new)
        live = (t < lengths)[:, None]
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        y[t] = np.where(live, h_new, 0.0)
        prev = y[t]  # finished items' rows are zero in the buffer the next GEMM quantizes
    if reverse:
        y = _reverse_each(y, lengths)
    return y, h, c


def _kernels(isa: str) -> list:
    """onnx.reference kernels for MatMulInteger and com.microsoft DynamicQuantizeLSTM on `isa`."""
    from onnx.reference.op_run import OpRun

    class MatMulInteger(OpRun):
        def _run(self, a, b, a_zero_point=None, b_zero_point=None):
            a_zp = 0 if a_zero_point is None else a_zero_point.reshape(-1)[0]
            b_zp = np.zeros(1, np.int32) if b_zero_point is None else b_zero_point
            lead = a.shape[:-1]
            out = integer_gemm(a.reshape(-1, a.shape[-1]), a_zp, b, b_zp, isa)
            return (out.reshape(*lead, b.shape[-1]),)

    class DynamicQuantizeLSTM(OpRun):
        op_domain = "com.microsoft"

        def _run(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,  # noqa: N803
                 W_scale=None, W_zero_point=None, R_scale=None, R_zero_point=None,  # noqa: N803
                 direction=None, hidden_size=None, clip=None, input_forget=None, activations=None,
                 activation_alpha=None, activation_beta=None):
            if clip is not None or input_forget or activations not in (None, [b"Sigmoid", b"Tanh", b"Tanh"] * 2,
                                                                       [b"Sigmoid", b"Tanh", b"Tanh"]):
                raise ValueError("the int8 emulation runs the default LSTM only (no clip, input_forget, "
                                 "activations)")
            if any(zp is not None and np.any(zp) for zp in (W_zero_point, R_zero_point)):
                raise ValueError("the int8 emulation expects symmetric (zero-point 0) LSTM weights")
            D, S, Bt = W.shape[0], X.shape[0], X.shape[1]
            H = R.shape[1]
            lengths = np.full(Bt, S, np.int64) if sequence_lens is None else sequence_lens.astype(np.int64)
            zeros = np.zeros((D, Bt, H), np.float32)
            h0 = zeros if initial_h is None else initial_h
            c0 = zeros if initial_c is None else initial_c
            bias = np.zeros((D, 8 * H), np.float32) if B is None else B
            peep = np.zeros((D, 3 * H), np.float32) if P is None else P
            w_scale, r_scale = W_scale.reshape(D, -1), R_scale.reshape(D, -1)
            reverse = (direction or b"forward") in (b"reverse", "reverse")
            outs = [quantized_lstm_direction(
                X.astype(np.float32), W[d], w_scale[d], R[d], r_scale[d], bias[d, :4 * H] + bias[d, 4 * H:],
                np.split(peep[d], 3), h0[d], c0[d], lengths, reverse or d == 1, isa) for d in range(D)]
            y = np.stack([o[0] for o in outs], axis=1)
            return y, np.stack([o[1] for o in outs]), np.stack([o[2] for o in outs])

    return [MatMulInteger, DynamicQuantizeLSTM]


def run_quantized(model, feeds: dict, isa: str, outputs: list[str] | None = None) -> list[np.ndarray]:
    """Outputs of a quantize_dynamic model (onnx.ModelProto) with its integer GEMMs computed as on `isa`."""
    from onnx.reference import ReferenceEvaluator

    if isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; known: {', '.join(ISAS)}")
    return ReferenceEvaluator(model, new_ops=_kernels(isa)).run(outputs, feeds)


class EmulatedInt8Runner(Runner):
    """A quantize_dynamic model with its integer GEMMs as `isa` computes them (export validation's second
    opinion: what a CPU of the other kind would return)."""

    def __init__(self, model, isa: str):
        super().__init__()
        if isa not in ISAS:
            raise ValueError(f"unknown instruction set {isa!r}; known: {', '.join(ISAS)}")
        self.model, self.isa, self.name = model, isa, f"int8 emulated {isa}"

    def _input_names(self):
        inits = {t.name for t in self.model.graph.initializer}
        return [i.name for i in self.model.graph.input if i.name not in inits]

    def _infer(self, feeds):
        names = [o.name for o in self.model.graph.output]
        return dict(zip(names, run_quantized(self.model, feeds, self.isa, names)))
