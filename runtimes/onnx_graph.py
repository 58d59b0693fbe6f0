"""Loading an ONNX model in one line of error, and walking its graph, subgraphs (Scan and Loop bodies) included."""
from __future__ import annotations

from lstm_onnx.runtimes.base import error_message


def load_model(path, external: bool = False):
    """onnx.load, or a one-line ValueError saying the model is missing or unreadable."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external)
    except FileNotFoundError:
        raise ValueError(f"model not found: {path}") from None
    except Exception as exc:  # protobuf's DecodeError, missing external data, ...
        raise ValueError(f"{path} is not a readable ONNX model: {error_message(exc)}") from None



def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from all_nodes(attr.g)
