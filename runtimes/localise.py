"""Where a failing runner departs from the baseline: measured from its outputs, and (for an LSTM with P whose
runner matches the model without P) which gates, inferred from gate traces with P vs with P zeroed.

Measured: per failing output, the first element outside tolerance, in time order where the output has a step
axis (our `sequence` head's y; hn/cn [layers*directions, batch, H] give layer and unit, no step). A `last` or
`classify` head's y has no step axis: only the item and unit are located.
Inferred (never measured on the runner, whose LSTM node hides its gates): where the runner matches the model
with P stripped (runtimes/diagnose.py), the gate traces of layer 0 are computed here in numpy from the
checkpoint's weights with P and with P = 0 on the same feeds; the first step, gate and unit where they part
is where a runtime that drops P must first go wrong. With zero initial state, p_i ⊙ c_{t-1} and p_f ⊙ c_{t-1}
vanish at step 0, so only o (which peeks at the new cell) can part there; i and f follow from step 1.
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.compare import Tolerances
from lstm_onnx.runtimes.numpy_ref import float64_state, lstm_direction


def _first_outside(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float, step_axis: int | None):
    bad = np.abs(actual.astype(np.float64) - expected) > atol + rtol * np.abs(expected)
    bad |= ~np.isfinite(actual)
    if not bad.any():
        return None
    order = bad if step_axis is None else np.moveaxis(bad, step_axis, 0)
    index = tuple(int(k) for k in np.argwhere(order)[0])
    return index, float(np.abs(actual - expected)[bad].max())


def measured(actual: dict, expected: dict, tolerances: Tolerances, meta: dict) -> list[dict]:
    cfg = meta.get("config", {}).get("model", {})
    D = 2 if cfg.get("bidirectional") else 1
    out = []
    for name, ref in expected.items():
        if name not in actual or actual[name].shape != ref.shape:
            continue
        tol = tolerances[name]
        step_axis = (1 if cfg.get("batch_first") else 0) if name == "y" and cfg.get("head") == "sequence" else None
        found = _first_outside(np.asarray(actual[name]), np.asarray(ref, np.float64), tol.atol, tol.rtol, step_axis)
        if found is None:
            continue
        index, worst = found
        if step_axis is not None:
            where = {"step": index[0], "item": index[1], "unit": index[2]}
        elif name in ("hn", "cn"):
            where = {"layer": index[0] // D, "direction": index[0] % D, "item": index[1], "unit": index[2]}
        else:
            where = {"item": index[0], "unit": index[-1], "step": "none (this output has no step axis)"}
        out.append({"output": name, **where, "max_abs": worst})
    return out


def gate_departure(state_dict: dict, cfg, x: np.ndarray, atol: float) -> dict | None:
    """Layer 0, forward: the first (step, gate, unit) where the gates with P and with P = 0 differ by > atol."""
    sd = float64_state(state_dict)
    if "lstm.peephole_l0" not in sd:
        return None
    x = np.asarray(x, np.float64)
    x = x if not cfg.batch_first else x.transpose(1, 0, 2)  # [S, B, F]
    W, R = sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"]
    b = sd["lstm.bias_ih_l0"] + sd["lstm.bias_hh_l0"] if cfg.bias else np.zeros(4 * cfg.hidden_size)
    S, B = x.shape[:2]
    runs = []
    for P in (sd["lstm.peephole_l0"], np.zeros_like(sd["lstm.peephole_l0"])):
        zeros, gates = np.zeros((B, cfg.hidden_size)), []
        lstm_direction(x, W, R, b, P, zeros, zeros, np.full(B, S), reverse=False, gates=gates)
        runs.append(gates)
    first = {}
    for t, (with_p, without) in enumerate(zip(*runs)):
        for g in ("i", "f", "o"):
            diff = np.abs(with_p[g] - without[g]).max(axis=0)
            if g not in first and (diff > atol).any():
                first[g] = {"step": t, "unit": int(np.argmax(diff > atol)), "max_abs": float(diff.max())}
        if len(first) == 3:
            break
    return first or None


def localise(model, feeds: dict, failing: dict[str, dict], expected: dict, tolerances: Tolerances, ckpt=None,
             folder=None) -> dict[str, dict]:
    """{runner: {"measured": [...], "inferred": {...} | absent, "note": ...}} for each failing runner."""
    from lstm_onnx.core import metadata
    from lstm_onnx.runtimes.diagnose import outputs_without_peepholes
    from lstm_onnx.runtimes.placement import lstm_nodes_with_peepholes

    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    without_p = None
    if ckpt is not None and lstm_nodes_with_peepholes(model):
        without_p = outputs_without_peepholes(model, feeds, folder)
    out = {}
    for runner, actual in failing.items():
        entry = {"measured": measured(actual, expected, tolerances, meta)}
        if without_p is not None and not measured(actual, without_p, tolerances, meta):
            gates = gate_departure(ckpt.state_dict, ckpt.model_config, feeds["x"], tolerances.default.atol)
            if gates:
                entry["inferred"] = {"why": "matches the model with P stripped; gates with P vs P = 0 (layer 0, "
                                            "numpy, from the checkpoint)", "gates": gates}
        out[runner] = entry
    return out


def to_lines(localisation: dict[str, dict]) -> list[str]:
    lines = []
    for runner, entry in localisation.items():
        for m in entry["measured"]:
            where = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("output", "max_abs"))
            lines.append(f"{runner} {m['output']}: first outside tolerance at {where} (max abs {m['max_abs']:.3g})")
        inferred = entry.get("inferred")
        if inferred:
            order = sorted(inferred["gates"].items(), key=lambda kv: kv[1]["step"])
            gates = "; ".join(f"{g} from step {v['step']} (unit {v['unit']})" for g, v in order)
            lines.append(f"{runner} inferred ({inferred['why']}): the gates that read c part at {gates}")
    return lines
