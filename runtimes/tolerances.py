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
    # float16 has 11 significant bits (eps 9.8e-4); errors grow over the recurrence. Measured (decomposed
    # form, ORT CPU, vs float32): trained H50 model on its 360 validation windows (outputs up to ~3) max abs
    # 7.4e-4; random H256 2-layer and H512 models at seq 100: <= 6.5e-5. 5e-3 leaves ~7x headroom, since a
    # GPU's float16 kernels may accumulate differently.
    "float16": Tolerance(5e-3, 5e-3),
    # int8 dynamic quantization (quantize_dynamic: 7-bit s8 weights per channel, u8 activations per run;
    # exporters/precision.Int8Settings). Derived from the worst case over both x86 GEMM paths, which the
    # emulation in runtimes/int8_gemm.py computes on any machine (identical with and without VNNI, since
    # nothing can saturate). Random inputs, as export validation and verify use, vs torch, at 3x7 up to 17x250:
    # <= 0.029 for the demo model and trained bidirectional, 2-layer and 2-layer bidirectional ones. On the
    # validation windows (real data, outputs up to ~3): 0.039 (demo, native), 0.054 (2-layer); there the rtol
    # term widens the bound. In the task metric |dRMSE| <= RMS(error) <= max abs, so an export inside the bound
    # moves the RMSE (0.17-0.24 on these models) by at most 0.05; measured +3e-4 to +5.4e-4. The error is a
    # fraction of each weight range, so it does not shrink with the output. 5e-2 is ~1.7x the random-input
    # worst case. With full 8-bit weights (int16 saturation without VNNI) the emulation gives up to 0.18 at
    # 5x13 and 0.12-0.44 on the validation windows: the bound rejects those.
    "int8": Tolerance(5e-2, 5e-2),
    # int8-static (QDQ, calibrated on training windows; the LSTM nodes of the native form stay float32).
    # Measured vs float32 on the validation sets: native 0.017 (demo) and 0.012 (CO2), decomposed 0.036 (CO2);
    # validation's N(0, 1) inputs reach past the calibrated range, where the decomposed demo model is off by
    # 0.078 and refused. The same bound as dynamic int8, since both are judged against one float32 model.
    "int8-static": Tolerance(5e-2, 5e-2),
}


def default_tolerance(precision: str = "float32") -> Tolerance:
    try:
        return DEFAULTS[precision]
    except KeyError:
        raise ValueError(f"no default tolerance for {precision!r}; known: {', '.join(DEFAULTS)}") from None
