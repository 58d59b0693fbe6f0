"""`lstm-pipeline doctor`: the machine fingerprint and the checks that decide what runs well here.

Each provider of this onnxruntime build opens a one-node LSTM with P (H 4) and its placement says where the
node ran; the int8 line says how this CPU's integer GEMM adds products; the thread line is core/threads.py's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_onnx.core import machine


@dataclass
class Check:
    name: str
    result: str


def peephole_lstm_model(hidden: int = 4, inputs: int = 3) -> bytes:
    """A one-node ONNX LSTM with P, random weights, as serialized bytes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["y"], hidden_size=hidden)
    graph = helper.make_graph(
        [node], "doctor_lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["S", "N", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [init("W", 1, 4 * hidden, inputs), init("R", 1, 4 * hidden, hidden), init("B", 1, 8 * hidden),
         init("P", 1, 3 * hidden)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


def provider_checks() -> list[Check]:
    """One line per provider of this build: whether it loads, and where the LSTM-with-P node ran."""
    from lstm_onnx.runtimes.base import RunnerError
    from lstm_onnx.runtimes.providers import available_providers
    from lstm_onnx.runtimes.session import SessionLoadError, open_session

    model = peephole_lstm_model()
    out = []
    for short in available_providers():
        try:
            opened = open_session(model, short, name=f"onnxruntime-{short}")
        except (RunnerError, SessionLoadError) as exc:
            out.append(Check(f"provider {short}", f"does not load: {str(exc).splitlines()[0][:160]}"))
            continue
        placed = opened.placement_report()["lstm"]
        where = ", ".join(sorted(set(placed.values()))) or "unknown (no profile)"
        note = "" if set(placed.values()) <= {opened.requested_full} else " (off the requested provider: " \
                                                                           "export --form decomposed for it)"
        out.append(Check(f"provider {short}", f"loads; an LSTM with P runs on {where}{note}"))
    return out


def int8_exports() -> str:
    """Whether `export --quantize int8`'s settings can saturate an int16 pair sum, on any x86 path."""
    from lstm_onnx.runtimes.int8_gemm import INT16_MAX

    widest = 2 * 255 * 64  # u8 activations times reduce_range's 7-bit s8 weights, |w| <= 64, a pair at a time
    return (f"export --quantize int8 (s8, reduce_range) cannot saturate: a pair sums to at most {widest} <= "
            f"{INT16_MAX}; `inspect` checks an older file's weights")


def checks(fp: dict) -> list[Check]:
    t = fp["threads"]
    found = provider_checks() if fp["ort_providers"] else [Check("onnxruntime", "not installed")]
    return found + [
        Check("int8", f"this CPU's int8 GEMM path: {machine.int8_gemm_path(fp['cpu']['isa'])}; {int8_exports()}"),
        Check("threads", f"{t['default_threads']} intra-op thread(s) by default ({t['usable_cores']} usable "
                         f"core(s): affinity {fp['cores']['affinity']}, cgroup quota "
                         f"{fp['cores']['quota'] or 'none'}); OMP_WAIT_POLICY={t['omp_wait_policy']} "
                         f"({t['policy_source']}); onnxruntime workers "
                         f"{'spin' if t['ort_spinning'] else 'yield'} when idle"),
    ]


def render(fp: dict, found: list[Check]) -> str:
    v = fp["versions"]
    lines = [f"cpu        {fp['cpu']['model']} ({fp['cpu']['machine']}); ISA: {' '.join(fp['cpu']['isa']) or '-'}",
             f"cores      {fp['cores']['usable']} usable (logical {fp['cores']['logical']}, affinity "
             f"{fp['cores']['affinity']}, quota {fp['cores']['quota'] or 'none'})",
             "versions   " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"providers  {', '.join(fp['ort_providers']) or '-'}", ""]
    width = max(len(c.name) for c in found)
    lines += [f"{c.name:<{width}}  {c.result}" for c in found]
    return "\n".join(lines)
