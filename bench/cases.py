"""Benchmark cases and the FLOP count they are judged by."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    seq: int


DEFAULT_CASES = (Case("streaming", 1, 1), Case("sequence", 1, 100), Case("batch", 64, 100))


def parse_case(text: str) -> Case:
    """`name=BxS`, e.g. `batch256=256x100`."""
    name, _, dims = text.partition("=")
    try:
        batch, seq = (int(v) for v in dims.lower().split("x"))
    except ValueError:
        raise ValueError(f"case {text!r}: expected NAME=BATCHxSEQ, e.g. batch=64x100") from None
    if not name or batch < 1 or seq < 1:
        raise ValueError(f"case {text!r}: expected NAME=BATCHxSEQ with positive sizes")
    return Case(name, batch, seq)


def lstm_flops(batch: int, seq: int, input_size: int, hidden: int, layers: int = 1, directions: int = 1) -> float:
    """2·S·B·4H·(I+H) per layer and direction (the two matmuls; gate elementwise work is not counted)."""
    total = 0.0
    for layer in range(layers):
        layer_in = input_size if layer == 0 else hidden * directions
        total += directions * 2.0 * seq * batch * 4 * hidden * (layer_in + hidden)
    return total


def lstm_gemm_shapes(batch: int, seq: int, input_size: int, hidden: int, layers: int = 1,
                     directions: int = 1) -> list[tuple[int, int, int]]:
    """(M, K, N) of the GEMMs an LSTM runs, per layer: the input projection batched over all steps
    [S·B, I] x [I, 4H], the same one step at a time [B, I] x [I, 4H], and the recurrent [B, H] x [H, 4H]."""
    shapes = []
    for layer in range(layers):
        layer_in = input_size if layer == 0 else hidden * directions
        shapes += [(seq * batch, layer_in, 4 * hidden), (batch, layer_in, 4 * hidden), (batch, hidden, 4 * hidden)]
    return list(dict.fromkeys(shapes))


def peak_gemm_shapes(cases, input_size: int, hidden: int, layers: int, square: int) -> list[tuple[int, int, int]]:
    """Every case's LSTM GEMM shapes and a large [square]^3 one: the GEMM peak is the fastest of them, since a
    BLAS can run the LSTM's own shapes faster per FLOP than any one square GEMM."""
    shapes = [s for c in cases for s in lstm_gemm_shapes(c["batch"], c["seq"], input_size, hidden, layers)]
    return list(dict.fromkeys(shapes + [(square, square, square)]))
