"""Walking an ONNX graph, subgraphs (Scan and Loop bodies) included."""
from __future__ import annotations


def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from all_nodes(attr.g)
