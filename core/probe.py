"""The names of the gate probe's traces, shared by the ONNX probe builder, the torch reference and the statistics.

A probe export (`export --form decomposed --probe`) adds, per layer l and direction d (0 forward, 1 reverse),
graph outputs `probe.l{l}.d{d}.{trace}`, each [seq, batch, H] in time order (the reverse direction's too):

    i, f, o            the gate activations σ(pre_*)
    c                  the new cell c_t
    peep_i, peep_f     p_i ⊙ c_{t-1}, p_f ⊙ c_{t-1}   (zeros where the model has no peepholes)
    peep_o             p_o ⊙ c_t                      (the output gate peeks at the new cell)
    pre_i, pre_f, pre_o the pre-activations W x + R h + p ⊙ c + b
"""
from __future__ import annotations

PREFIX = "probe."
GATES = ("i", "f", "o")
TRACES = ("i", "f", "o", "c", "peep_i", "peep_f", "peep_o", "pre_i", "pre_f", "pre_o")


def trace_name(layer: int, direction: int, trace: str) -> str:
    return f"{PREFIX}l{layer}.d{direction}.{trace}"


def parse_name(name: str) -> tuple[int, int, str] | None:
    """(layer, direction, trace) of a probe output's name, or None for any other name."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX):].split(".")
    if len(parts) != 3 or parts[2] not in TRACES or not parts[0][1:].isdigit() or not parts[1][1:].isdigit():
        return None
    return int(parts[0][1:]), int(parts[1][1:]), parts[2]


def is_probe(name: str) -> bool:
    return parse_name(name) is not None
