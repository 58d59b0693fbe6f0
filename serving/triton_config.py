"""config.pbtxt for Triton's ONNX Runtime backend, as protobuf text (the ModelConfig schema of
tritonclient.grpc.model_config_pb2; written by hand so generating needs no tritonclient).

A stateless export gets the dynamic batcher. A stateful one gets the sequence batcher with the `oldest`
strategy (requests of different sequences batched together) and implicit state: Triton keeps h/c per
sequence, feeds the model's hn/cn of one request back as h0/c0 of the next, and starts each sequence from
`initial_state` zeros.

It also gets the START and READY control inputs (int32_false_true [0, 1]). The ONNX Runtime backend requires each
configured control to be one more model input, not listed under `input`, of dims [1] after the batch and of the
type its *_false_true gives (TYPE_INT32 here; onnxruntime_backend's ValidateBooleanSequenceControl); the graph
triton_graph.py writes has them, and gates the state with them: START zeroes it (so a sequence starts from zero
even if Triton's state handling did not), READY=0 hands it back unchanged (a slot without a request). The
state tensors are not listed as inputs or outputs: Triton's implicit state contract keeps them between the model
and Triton (listing hn as an output would only let a client read it, for debugging).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lstm_onnx.serving.triton_options import TritonOptions

if TYPE_CHECKING:  # not at run time: the python-backend writer shares these builders without importing onnx
    from lstm_onnx.serving.triton_graph import ModelSpec, TensorSpec

PLATFORM = "onnxruntime_onnx"
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


class Token(str):
    """An enum value (TYPE_FP32, KIND_GPU): written bare, not quoted."""


def config_text(options: TritonOptions, spec: ModelSpec) -> str:
    return render(config_fields(options, spec))


def config_json(options: TritonOptions, spec: ModelSpec) -> dict:
    """The same ModelConfig as Triton's HTTP API gives it (/v2/models/{m}/config)."""
    return to_json(config_fields(options, spec))


def config_fields(options: TritonOptions, spec: ModelSpec) -> list:
    fields = [("name", options.name), ("platform", PLATFORM), ("max_batch_size", options.max_batch_size),
              ("input", [_tensor(t) for t in spec.inputs]), ("output", [_tensor(t) for t in spec.outputs])]
    fields.append(("sequence_batching", _sequence(options, spec)) if spec.stateful
                  else ("dynamic_batching", dynamic_batching(options)))
    fields.append(("instance_group", [instance_group(options)]))
    return fields


def _tensor(t: TensorSpec) -> list:
    fields = [("name", t.name), ("data_type", Token(t.data_type)), ("dims", list(t.dims))]
    if t.reshape is not None:
        fields.append(("reshape", [("shape", list(t.reshape))]))
    return fields


def _preferred(options: TritonOptions) -> list:
    return [("preferred_batch_size", list(options.preferred_batch_sizes))] if options.preferred_batch_sizes else []


def dynamic_batching(options: TritonOptions) -> list:
    return [*_preferred(options), ("max_queue_delay_microseconds", options.max_queue_delay_us),
            ("default_queue_policy", [("max_queue_size", options.max_queue_size)])]


def oldest(options: TritonOptions) -> list:
    """sequence_batching's `oldest` strategy. It has no queue policy: max_queue_size applies to the dynamic
    batcher only."""
    return [("max_candidate_sequences", options.max_candidate_sequences), *_preferred(options),
            ("max_queue_delay_microseconds", options.max_queue_delay_us)]


def _sequence(options: TritonOptions, spec: ModelSpec) -> list:
    states = [[("input_name", h_in), ("output_name", h_out), ("data_type", Token("TYPE_FP32")),
               ("dims", list(dims)),
               ("initial_state", [[("data_type", Token("TYPE_FP32")), ("dims", list(dims)), ("zero_data", True),
                                   ("name", "zero")]])]  # a repeated field: a list of one
              for h_in, h_out, dims in spec.states]
    controls = [[("name", name), ("control", [[("kind", Token(kind)), ("int32_false_true", [0, 1])]])]
                for name, kind in spec.controls]
    return [("max_sequence_idle_microseconds", options.max_sequence_idle_us), ("oldest", oldest(options)),
            *([("control_input", controls)] if controls else []), ("state", states)]


def instance_group(options: TritonOptions) -> list:
    fields = [("kind", Token(KINDS[options.instance_kind])), ("count", options.instance_count)]
    if options.gpus:
        fields.append(("gpus", list(options.gpus)))
    return fields


def render(fields: list, depth: int = 0) -> str:
    """Protobuf text of (key, value) fields: a value that is a list of fields is a message, a list of those a
    repeated message, a list of scalars a repeated scalar; a Token is written bare, a str quoted."""
    pad = "  " * depth
    lines = []
    for key, value in fields:
        if isinstance(value, list) and value and isinstance(value[0], list):  # repeated message
            blocks = [f"{pad}  {{\n{render(item, depth + 2)}{pad}  }}" for item in value]
            lines.append(f"{pad}{key} [\n" + ",\n".join(blocks) + f"\n{pad}]\n")
        elif isinstance(value, list) and value and isinstance(value[0], tuple):  # message
            lines.append(f"{pad}{key} {{\n{render(value, depth + 1)}{pad}}}\n")
        elif isinstance(value, list):  # repeated scalar
            lines.append(f"{pad}{key}: [{''.join(' ' + _scalar(v) + ',' for v in value).rstrip(',')} ]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(lines)


def _scalar(value) -> str:
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# ModelConfig's 64-bit integer fields, which protobuf's JSON mapping writes as strings.
WIDE = {"dims", "shape", "max_queue_delay_microseconds", "max_sequence_idle_microseconds"}


def to_json(fields: list) -> dict:
    """(key, value) fields -> protobuf's JSON mapping of the message (proto field names; fields at their
    default value left out, as protobuf's json_format writes them)."""
    out = {}
    for key, value in fields:
        if isinstance(value, list) and value and isinstance(value[0], list):
            out[key] = [to_json(item) for item in value]
        elif isinstance(value, list) and value and isinstance(value[0], tuple):
            out[key] = to_json(value)
        elif isinstance(value, list):
            if value:
                out[key] = [str(v) if key in WIDE else v for v in value]
        elif value or isinstance(value, Token):
            out[key] = str(value) if key in WIDE and not isinstance(value, bool) else value
    return out
