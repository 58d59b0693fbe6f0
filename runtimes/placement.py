"""Which execution provider ran each node of an ORT session, read from ORT's profiling JSON.

A node the requested provider cannot run silently falls back to CPU; the placement report makes that loud.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Nodes ORT inserts itself, or puts on CPU on purpose (shape arithmetic); not a fallback worth a warning.
ORT_INTERNAL_OPS = {"MemcpyToHost", "MemcpyFromHost", "Shape", "Size"}
KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class NodePlacement:
    node: str
    op_type: str
    provider: str


def parse_profile(source) -> list[NodePlacement]:
    """Node placements from an ORT profile: a path to its JSON, or the parsed event list.

    Each executed node has a "Node" event `<name>_kernel_time` whose args carry `op_name` and `provider`.
    """
    events = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    seen: dict[str, NodePlacement] = {}
    for event in events:
        args = event.get("args") or {}
        name = event.get("name", "")
        if event.get("cat") != "Node" or "provider" not in args or not name.endswith(KERNEL_SUFFIX):
            continue
        node = name[: -len(KERNEL_SUFFIX)]
        seen.setdefault(node, NodePlacement(node, args.get("op_name", "?"), args["provider"]))
    return list(seen.values())


def lstm_nodes_with_peepholes(model) -> set[str]:
    """Names of LSTM nodes whose input P (index 7) is set."""
    return {n.name for n in model.graph.node if n.op_type == "LSTM" and len(n.input) > 7 and n.input[7]}


def explain(p: NodePlacement, requested_short: str, peephole_nodes: set[str]) -> str:
    """Why a node likely fell back, where we know."""
    if p.op_type == "LSTM" and requested_short in ("cuda", "tensorrt") and p.node in peephole_nodes:
        return (f"ORT's {requested_short.upper()} LSTM has no peephole support; "
                f"export with --form decomposed")
    if p.op_type == "LSTM" and requested_short == "tensorrt":
        return "TensorRT's ONNX parser takes only some LSTM variants; export with --form decomposed"
    if p.op_type == "LSTM":
        return "export with --form decomposed (MatMul + Scan, no LSTM op) to run it on the requested provider"
    return "the requested provider has no kernel for it (or ORT judged CPU faster)"


def fallbacks(requested_full: str, placements: list[NodePlacement]) -> list[NodePlacement]:
    """The nodes that ran elsewhere than requested (ORT-internal copy/shape nodes excepted)."""
    return [p for p in placements if p.provider != requested_full and p.op_type not in ORT_INTERNAL_OPS]


def fallback_warnings(runner: str, requested_full: str, requested_short: str,
                      placements: list[NodePlacement], model=None) -> list[str]:
    """One warning per node that ran elsewhere than requested (ORT-internal copy/shape nodes excepted)."""
    peephole_nodes = lstm_nodes_with_peepholes(model) if model is not None else set()
    out = []
    for p in fallbacks(requested_full, placements):
        out.append(f"{runner}: {p.op_type} node {p.node!r} ran on {p.provider} although {requested_short} "
                   f"was requested: {explain(p, requested_short, peephole_nodes)}")
    return out


def summarize(placements: list[NodePlacement]) -> dict[str, int]:
    """Node count per provider."""
    counts: dict[str, int] = {}
    for p in placements:
        counts[p.provider] = counts.get(p.provider, 0) + 1
    return counts


def to_dicts(placements: list[NodePlacement]) -> list[dict]:
    return [asdict(p) for p in placements]
