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
