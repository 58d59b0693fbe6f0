"""Loading an ONNX model in one line of error, and walking its graph, subgraphs (Scan and Loop bodies) included."""
from __future__ import annotations

from lstm_onnx.runtimes.base import error_message


def load_model(path, external: bool = False):
    """onnx.load, or a one-line ValueError saying the model is missing or unreadable. An ORT-format file
    gives its interface only (runtimes/ort_format.interface_model): inputs, outputs, metadata, no nodes."""
    import onnx

    from lstm_onnx.runtimes.ort_file import interface_model, is_ort_format

    if is_ort_format(path):
        return interface_model(path)

    try:
        return onnx.load(str(path), load_external_data=external)
    except FileNotFoundError:
        raise ValueError(f"model not found: {path}") from None
    except Exception as exc:  # protobuf's DecodeError, missing external data, ...
        raise ValueError(f"{path} is not a readable ONNX model: {error_message(exc)}") from None



def graph_inputs(graph) -> list:
    """The graph's real inputs (ValueInfos), without those an initializer backs (old IR versions list them)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def io_names(graph) -> tuple[list[str], list[str]]:
    """The names of the graph's real inputs and of its outputs, in graph order."""
    return [vi.name for vi in graph_inputs(graph)], [vi.name for vi in graph.output]


def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from all_nodes(attr.g)
