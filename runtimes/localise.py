"""Where a failing runner departs from the baseline: measured from its outputs, and (for an LSTM with P whose
runner matches the model without P) which gates, inferred from gate traces with P vs with P zeroed.

Measured: per failing output, the first element outside tolerance, in time order where the output has a step
axis (our `sequence` head's y; hn/cn [layers*directions, batch, H] give layer and unit, no step). A `last` or
`classify` head's y has no step axis: there, with `rerun`, the failing runner runs a copy of the model whose
LSTM nodes also output Y (every step), against ORT CPU on the same copy, and Y gives the step. A probe export
(`export --form decomposed --probe`, core/probe.py) run by the runner has its gate traces as outputs: each
gives layer, direction, gate, step, item and unit, and the first of them in the order the runner computes
them is the gate where it departs.
Inferred (never measured on the runner, whose LSTM node hides its gates): where the runner matches the model
with P stripped (runtimes/diagnose.py), the gate traces of layer 0 are computed here in numpy from the
checkpoint's weights with P and with P = 0 on the same feeds; the first step, gate and unit where they part
is where a runtime that drops P must first go wrong. With zero initial state, p_i ⊙ c_{t-1} and p_f ⊙ c_{t-1}
vanish at step 0, so only o (which peeks at the new cell) can part there; i and f follow from step 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lstm_onnx.core.probe import is_probe, parse_name
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
        if is_probe(name):
            found = _probe_departure(name, np.asarray(actual[name]), np.asarray(ref, np.float64), tol)
            out += [found] if found else []
            continue
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


def _probe_departure(name: str, actual: np.ndarray, expected: np.ndarray, tol) -> dict | None:
    """A probe trace [seq, batch, H] (time order): the first step, in the order the direction runs, outside
    tolerance, with its layer, direction and gate."""
    layer, d, trace = parse_name(name)
    flip = (lambda a: a[::-1]) if d else (lambda a: a)  # the reverse direction runs from the last step
    found = _first_outside(flip(actual), flip(expected), tol.atol, tol.rtol, 0)
    if found is None:
        return None
    (step, item, unit), worst = found
    step = actual.shape[0] - 1 - step if d else step
    return {"output": name, "layer": layer, "direction": d, "gate": trace, "step": step, "item": item,
            "unit": unit, "max_abs": worst}


def first_gate(found: list[dict]) -> dict | None:
    """Of the probe departures, the one the runner computes first: lowest layer, forward direction before
    reverse (they run independently), earliest step in the order it runs (a reverse direction's run
    backwards), then the order a step computes them (i, f, c, o; each gate after its peephole and
    pre-activation terms)."""
    order = {t: k for k, t in enumerate(("peep_i", "pre_i", "i", "peep_f", "pre_f", "f", "c",
                                         "peep_o", "pre_o", "o"))}
    probes = [m for m in found if "gate" in m]
    return min(probes, key=lambda m: (m["layer"], m["direction"], -m["step"] if m["direction"] else m["step"],
                                      order.get(m["gate"], 99)), default=None)


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


Y_PREFIX = "localise.Y."


def with_lstm_y(model):
    """A copy of `model` whose top-level LSTM nodes also output Y [S, D, B, H] (every step's h) as graph
    outputs `localise.Y.<k>`, k counting the LSTM nodes in graph order; None when it has none."""
    import onnx
    from onnx import helper

    lstms = [n for n in model.graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    if not lstms:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = [n for n in copy.graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    elem = copy.graph.output[0].type.tensor_type.elem_type or onnx.TensorProto.FLOAT
    for k, node in enumerate(nodes):
        if not node.output:
            node.output.append("")
        if node.output[0] == "":
            node.output[0] = f"{Y_PREFIX}{k}"
            name = node.output[0]
        else:  # Y feeds the graph: an Identity gives it the output's name
            name = f"{Y_PREFIX}{k}"
            copy.graph.node.append(helper.make_node("Identity", [node.output[0]], [name]))
        copy.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    return copy


def y_departures(actual: dict, reference: dict, tolerance) -> list[dict]:
    """Per LSTM node k and direction, the first step (in the order it runs) where Y leaves tolerance."""
    out = []
    for name in sorted(n for n in reference if n.startswith(Y_PREFIX)):
        if name not in actual or np.shape(actual[name]) != np.shape(reference[name]):
            continue
        got, ref = np.asarray(actual[name]), np.asarray(reference[name], np.float64)
        for d in range(ref.shape[1]):
            flip = (lambda a: a[::-1]) if d else (lambda a: a)
            found = _first_outside(flip(got[:, d]), flip(ref[:, d]), tolerance.atol, tolerance.rtol, 0)
            if found:
                (step, item, unit), worst = found
                out.append({"output": f"Y of LSTM node {name[len(Y_PREFIX):]}", "direction": d,
                            "step": ref.shape[0] - 1 - step if d else step, "item": item, "unit": unit,
                            "max_abs": worst})
    return out


def _y_localisation(model, feeds, failing, tolerances, rerun) -> dict[str, list[dict] | str]:
    """Rerun each failing runner on the model with its LSTMs' Y exposed, against ORT CPU (onnx-reference
    for ORT CPU itself) on the same copy: the step where it departs, for models whose outputs have none."""
    import tempfile

    from lstm_onnx.runtimes.base import error_message

    exposed = with_lstm_y(model)
    if exposed is None or not failing:
        return {}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "with_y.onnx"
        path.write_bytes(exposed.SerializeToString())
        references: dict = {}
        for runner in failing:
            ref_name = "onnx-reference" if runner == "onnxruntime-cpu" else "onnxruntime-cpu"
            try:
                if ref_name not in references:
                    references[ref_name] = rerun(ref_name, path, feeds)
                out[runner] = y_departures(rerun(runner, path, feeds), references[ref_name], tolerances.default)
            except Exception as exc:  # any runtime's failure: Y localisation is a bonus, never verify's end
                out[runner] = f"Y not localised: {error_message(exc)}"
    return out


def localise(model, feeds: dict, failing: dict[str, dict], expected: dict, tolerances: Tolerances, ckpt=None,
             folder=None, rerun=None) -> dict[str, dict]:
    """{runner: {"measured": [...], "inferred": {...} | absent, "note": ...}} for each failing runner.
    `rerun(runner, model_path, feeds) -> outputs` lets native-form runners be located by step from Y (a
    model with external data stays as it is: its copy could not find the weights)."""
    from lstm_onnx.core import metadata
    from lstm_onnx.runtimes.diagnose import outputs_without_peepholes
    from lstm_onnx.runtimes.placement import lstm_nodes_with_peepholes

    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    without_p = None
    if ckpt is not None and lstm_nodes_with_peepholes(model):
        without_p = outputs_without_peepholes(model, feeds, folder)
    external = any(t.data_location == 1 for t in model.graph.initializer)  # TensorProto.EXTERNAL
    by_y = _y_localisation(model, feeds, failing, tolerances, rerun) if rerun and not external else {}
    out = {}
    for runner, actual in failing.items():
        entry = {"measured": measured(actual, expected, tolerances, meta)}
        found_y = by_y.get(runner)
        if isinstance(found_y, str):
            entry["note"] = found_y
        elif found_y:
            entry["measured"] += found_y
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
        if entry.get("note"):
            lines.append(f"{runner}: {entry['note']}")
        first = first_gate(entry["measured"])
        if first:
            lines.append(f"{runner} departs first at layer {first['layer']}, direction {first['direction']}, gate "
                         f"{first['gate']}, step {first['step']} (item {first['item']}, unit {first['unit']})")
        inferred = entry.get("inferred")
        if inferred:
            order = sorted(inferred["gates"].items(), key=lambda kv: kv[1]["step"])
            gates = "; ".join(f"{g} from step {v['step']} (unit {v['unit']})" for g, v in order)
            lines.append(f"{runner} inferred ({inferred['why']}): the gates that read c part at {gates}")
    return lines
