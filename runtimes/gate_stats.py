"""What the gates do, from the probe's traces (core.probe), numpy only: torch and ORT traces go through here alike.

- Saturation, after Karpathy, Johnson & Fei-Fei 2015 ("Visualizing and Understanding Recurrent Networks",
  §4.3): per unit and gate, the fraction of its values (every step of every sequence) below LEFT
  (left-saturated) and above RIGHT (right-saturated). A unit is *mostly* left- or right-saturated where that
  fraction exceeds MOSTLY.
- The peephole's share per gate: mean |p ⊙ c| / mean |pre-activation|, pre-activation = W x + R h + p ⊙ c + b.
  0 for a model without peepholes; it says how much of what drives the gate comes through the peephole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from lstm_onnx.core.probe import GATES, parse_name
from lstm_onnx.core.tables import grid

LEFT, RIGHT = 0.1, 0.9  # Karpathy et al.'s thresholds
MOSTLY = 0.5  # a unit saturated on one side in more than half of its values


def group(traces: dict[str, np.ndarray]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """{probe name: [seq, batch, H]} -> {(layer, direction): {trace: [seq, batch, H]}}; other names are left out."""
    out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for name, value in traces.items():
        parsed = parse_name(name)
        if parsed is not None:
            layer, d, trace = parsed
            out.setdefault((layer, d), {})[trace] = np.asarray(value)
    return dict(sorted(out.items()))


def saturation(gate: np.ndarray, left: float = LEFT, right: float = RIGHT) -> tuple[np.ndarray, np.ndarray]:
    """gate [seq, batch, H] in (0, 1) -> (left-saturated fraction [H], right-saturated fraction [H])."""
    flat = gate.reshape(-1, gate.shape[-1])
    return (flat < left).mean(axis=0), (flat > right).mean(axis=0)


def peephole_share(peep: np.ndarray, pre: np.ndarray) -> float:
    """mean |p ⊙ c| / mean |pre-activation| over every step, item and unit (0 if the gate is never driven)."""
    drive = float(np.abs(pre).mean())
    return float(np.abs(peep).mean()) / drive if drive > 0 else 0.0


@dataclass
class GateStats:
    layer: int
    direction: int
    gate: str  # i, f or o
    left: np.ndarray  # [H] fraction of values < LEFT
    right: np.ndarray  # [H] fraction of values > RIGHT
    peephole_share: float

    @property
    def mostly_left(self) -> int:
        return int((self.left > MOSTLY).sum())

    @property
    def mostly_right(self) -> int:
        return int((self.right > MOSTLY).sum())

    def to_dict(self) -> dict:
        return {"layer": self.layer, "direction": self.direction, "gate": self.gate, "units": int(self.left.size),
                "mean_left_saturated": float(self.left.mean()), "mean_right_saturated": float(self.right.mean()),
                "units_mostly_left": self.mostly_left, "units_mostly_right": self.mostly_right,
                "peephole_share": self.peephole_share,
                "left_saturated": self.left.round(6).tolist(), "right_saturated": self.right.round(6).tolist()}


@dataclass
class GateReport:
    source: str  # where the traces came from (torch, onnxruntime-cpu) and the model
    steps: int
    sequences: int
    stats: list[GateStats] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "steps": self.steps, "sequences": self.sequences,
                "thresholds": {"left": LEFT, "right": RIGHT, "mostly": MOSTLY},
                "gates": [s.to_dict() for s in self.stats]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_table(self, markdown: bool = False) -> str:
        rows = [[str(s.layer), "reverse" if s.direction else "forward", s.gate, f"{s.left.mean():.1%}",
                 f"{s.right.mean():.1%}", f"{s.mostly_left}/{s.left.size}", f"{s.mostly_right}/{s.right.size}",
                 f"{s.peephole_share:.3f}"] for s in self.stats]
        head = ["layer", "direction", "gate", f"left-sat (<{LEFT:g})", f"right-sat (>{RIGHT:g})",
                "units mostly left", "units mostly right", "peephole share"]
        intro = f"gates of {self.source}: {self.sequences} sequence(s) x {self.steps} steps"
        return "\n".join([intro, ""] + grid(head, rows, markdown))


def gate_report(traces: dict[str, np.ndarray], source: str) -> GateReport:
    """The statistics of every layer, direction and gate in `traces` (probe names, [seq, batch, H])."""
    grouped = group(traces)
    if not grouped:
        raise ValueError("no probe traces (outputs named probe.l*.d*.*): export with --form decomposed --probe")
    first = next(iter(grouped.values()))["i"]
    report = GateReport(source, steps=int(first.shape[0]), sequences=int(first.shape[1]))
    for (layer, d), t in grouped.items():
        for gate in GATES:
            left, right = saturation(t[gate])
            report.stats.append(GateStats(layer, d, gate, left, right,
                                          peephole_share(t[f"peep_{gate}"], t[f"pre_{gate}"])))
    return report


def onnx_traces(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a probe export on ORT CPU; its probe outputs ({name: [seq, batch, H]})."""
    from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

    with OnnxRuntimeRunner(model, "cpu", profile=False) as runner:
        outputs = runner.infer({k: feeds[k] for k in runner.input_names})
    traces = {k: v for k, v in outputs.items() if parse_name(k) is not None}
    if not traces:
        raise ValueError("the model has no probe outputs: export it with --form decomposed --probe")
    return traces
