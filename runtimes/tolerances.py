"""The one table of default tolerances, by precision. An element passes if |a - ref| <= atol + rtol*|ref|."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"atol={self.atol:g} rtol={self.rtol:g}"


DEFAULTS: dict[str, Tolerance] = {
    # Same math, different summation order: float32 rounding over ~100 steps stays well under 1e-5.
    "float32": Tolerance(1e-5, 1e-5),
    # TF32 matmuls keep 10 mantissa bits; measured on an H100 with ORT CUDA: shifts of ~2.5e-4.
    "tf32": Tolerance(1e-3, 1e-3),
    # float16 has 11 significant bits (eps 9.8e-4); errors grow over the recurrence.
    "float16": Tolerance(1e-2, 1e-2),
    # int8 dynamic quantization of W and R: a 1/255 step of each weight range, accumulated.
    "int8": Tolerance(5e-2, 5e-2),
}


def default_tolerance(precision: str = "float32") -> Tolerance:
    try:
        return DEFAULTS[precision]
    except KeyError:
        raise ValueError(f"no default tolerance for {precision!r}; known: {', '.join(DEFAULTS)}") from None
