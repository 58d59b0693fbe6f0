"""Our export rewritten for Triton's ONNX Runtime backend (onnx.helper only, no torch).

Triton batches along the first axis of every tensor, the implicit state too, so the model it loads must be
batch-first throughout: x [B, S, F], y [B, O] or [B, S, O], and for a stateful export h0/c0 and hn/cn
[B, L*D, H] where our export has [L*D, B, H] (Transpose nodes around the graph). It must also be raw-in/raw-out,
since a Triton client sends raw features: runtimes/fold.py folds the normalization from the metadata into the
weights (its NaN check output is dropped: Triton has no caller to read it).

A stateful model also takes Triton's sequence controls START and READY ([B, 1] int32, 0/1), and obeys them:
a row with START=1 runs from zero state whatever state Triton hands in, and a row with READY=0 (a batch slot
without a request) returns the state it was given, unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from lstm_onnx.core import metadata
from lstm_onnx.runtimes.fold import RAW_X, RAW_Y, SUM, fold_normalization
from lstm_onnx.runtimes.model_metadata import MetadataError, checked_metadata, require_export
from lstm_onnx.runtimes.onnx_graph import all_nodes
from lstm_onnx.runtimes.verify import model_precision

STATES = (("h0", "hn"), ("c0", "cn"))  # Triton's implicit state: input_name -> output_name
CONTROLS = (("START", "CONTROL_SEQUENCE_START"), ("READY", "CONTROL_SEQUENCE_READY"))  # model input -> kind
TRITON_TYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.INT32: "TYPE_INT32"}
PEEPHOLE_OPS = ("LSTM", "DynamicQuantizeLSTM")  # input 7 is P in both (the latter: an int8 export)
_NUMPY = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32}


class TritonModelError(ValueError):
    """A model this generator cannot turn into a Triton model; the message says what to export instead."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as config.pbtxt lists it: dims without the batch axis (-1: variable)."""

    name: str
    data_type: str  # TYPE_FP32 | TYPE_INT32
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # the model's own shape where dims cannot express it ([B] -> [])


@dataclass(frozen=True)
class ModelSpec:
    """What config.pbtxt says about the rewritten model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    states: tuple[tuple[str, str, tuple[int, ...]], ...]  # (input, output, dims without batch)
    peepholes: bool  # a native LSTM node with P (ORT's CUDA LSTM cannot run it)
    precision: str  # float32 | float16 | int8: the tolerance key of the export
    controls: tuple[tuple[str, str], ...] = ()  # (model input, control kind), as CONTROLS; stateful models only

    @property
    def stateful(self) -> bool:
        return bool(self.states)


def triton_model(model_path) -> tuple[onnx.ModelProto, ModelSpec]:
    """The model at `model_path` (our export) rewritten for Triton, checked by onnx.checker."""
    source = _load(model_path)
    meta = _metadata(source, model_path)
    head = meta.get("config", {}).get("model", {}).get("head", "last")
    batch_first = bool(meta.get("config", {}).get("model", {}).get("batch_first", True))
    _check_dynamic_batch(source, model_path, batch_first)
    model = onnx.load_from_string(fold_normalization(model_path, meta.get("normalization"),
                                                     denormalize=head != "classify"))
    _drop_sum(model.graph)
    _rename_io(model.graph, RAW_X, "x")
    _rename_io(model.graph, RAW_Y, "y")
    if not batch_first:  # x [S, B, F]; a sequence head's y [S, B, O]
        _batch_first_input(model.graph, "x")
        if head == "sequence":
            _batch_first_output(model.graph, "y")
    stateful = any(vi.name == "h0" for vi in model.graph.input)
    if stateful:
        for h_in, h_out in STATES:
            _batch_first_input(model.graph, h_in)
            _batch_first_output(model.graph, h_out)
        _sequence_controls(model.graph)
    _annotate(model, meta, stateful)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise TritonModelError(f"the rewritten model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return model, _spec(model)


def _load(model_path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(model_path))
    except FileNotFoundError:
        raise TritonModelError(f"model not found: {model_path}") from None
    except Exception as exc:  # protobuf raises DecodeError and others
        raise TritonModelError(f"{model_path} is not a readable ONNX model ({type(exc).__name__})") from None
    try:
        onnx.checker.check_model(model)
    except UnicodeDecodeError:
        raise TritonModelError(f"{model_path}: a name in the graph is not UTF-8 text; re-export the model with "
                               "`lstm-pipeline export`") from None
    except onnx.checker.ValidationError as exc:
        raise TritonModelError(f"{model_path} is not a valid ONNX model ({str(exc).splitlines()[0]}); re-export "
                               "it with `lstm-pipeline export`") from None
    ins, outs = {vi.name for vi in model.graph.input}, {vi.name for vi in model.graph.output}
    if "x" not in ins or "y" not in outs:
        raise TritonModelError(f"{model_path} has inputs {sorted(ins)} and outputs {sorted(outs)}; expected "
                               "input x and output y, as `lstm-pipeline export` writes them")
    return model


def _metadata(model: onnx.ModelProto, source) -> dict:
    x = next(vi for vi in model.graph.input if vi.name == "x")
    features = x.type.tensor_type.shape.dim[-1].dim_value or None
    try:
        meta = checked_metadata({p.key: p.value for p in model.metadata_props}, source, features)
        require_export(meta, source)
        return meta
    except MetadataError as exc:
        raise TritonModelError(str(exc)) from None


def _check_dynamic_batch(model: onnx.ModelProto, source, batch_first: bool) -> None:
    x = next(vi for vi in model.graph.input if vi.name == "x")
    batch = x.type.tensor_type.shape.dim[0 if batch_first else 1]
    if batch.dim_value:
        raise TritonModelError(f"{source} has a static batch size ({batch.dim_value}); Triton forms batches of "
                               "any size: export with --form native or decomposed")


def _drop_sum(graph) -> None:
    """fold_normalization's NaN/Inf check output: our Stepper reads it, a Triton client would not."""
    keep = [n for n in graph.node if SUM not in n.output]
    del graph.node[:]
    graph.node.extend(keep)
    outs = [o for o in graph.output if o.name != SUM]
    del graph.output[:]
    graph.output.extend(outs)


def _rename(graph, old: str, new: str) -> None:
    """Every use and definition of value `old` in `graph` and its subgraphs (Scan/Loop bodies may read it
    from the outer scope)."""
    for node in all_nodes(graph):
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]


def _rename_io(graph, old: str, new: str) -> None:
    _rename(graph, old, new)
    for vi in (*graph.input, *graph.output):
        if vi.name == old:
            vi.name = new


def _swap_leading_dims(vi) -> None:
    dims = vi.type.tensor_type.shape.dim
    first, second = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
    first.CopyFrom(dims[0])
    second.CopyFrom(dims[1])
    dims[0].CopyFrom(second)
    dims[1].CopyFrom(first)


def _batch_first_input(graph, name: str) -> None:
    """Graph input `name` becomes batch-first; the graph reads its old layout from a Transpose."""
    inner = f"triton.{name}"
    _rename(graph, name, inner)
    graph.node.insert(0, helper.make_node("Transpose", [name], [inner], name=f"triton.{name}.transpose",
                                          perm=[1, 0, 2]))
    _swap_leading_dims(next(vi for vi in graph.input if vi.name == name))


def _batch_first_output(graph, name: str) -> None:
    """Graph output `name` becomes batch-first, through a Transpose of what the graph computed."""
    inner = f"triton.{name}"
    _rename(graph, name, inner)
    graph.node.append(helper.make_node("Transpose", [inner], [name], name=f"triton.{name}.transpose",
                                       perm=[1, 0, 2]))
    _swap_leading_dims(next(vi for vi in graph.output if vi.name == name))


def _sequence_controls(graph) -> None:
    """START and READY as graph inputs [B, 1] int32 (the type int32_false_true gives them: the ONNX Runtime
    backend refuses a model whose control input has another), turned into [B, 1, 1] masks over the state."""
    batch = next(vi for vi in graph.input if vi.name == STATES[0][0]).type.tensor_type.shape.dim[0]
    graph.initializer.append(helper.make_tensor("triton.control.axes", TensorProto.INT64, [1], [2]))
    front = []
    for name, _ in CONTROLS:
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.INT32,
                                                         [batch.dim_param or batch.dim_value or None, 1]))
        front += [helper.make_node("Cast", [name], [f"triton.{name}.bool"], name=f"triton.{name}.cast",
                                   to=TensorProto.BOOL),
                  helper.make_node("Unsqueeze", [f"triton.{name}.bool", "triton.control.axes"],
                                   [f"triton.{name}.mask"], name=f"triton.{name}.unsqueeze")]
    for h_in, h_out in STATES:
        front += _start_gate(graph, h_in)
        _ready_gate(graph, h_in, h_out)
    for node in reversed(front):
        graph.node.insert(0, node)


def _start_gate(graph, h_in: str) -> list:
    """The graph reads h_in where START is 0, zeros where it is 1 (Where, not a product: 0 * inf is NaN).
    Returns the nodes to put in front of the graph."""
    elem = next(vi for vi in graph.input if vi.name == h_in).type.tensor_type.elem_type
    graph.initializer.append(helper.make_tensor(f"triton.{h_in}.zero", elem, [], [0]))
    _rename(graph, h_in, f"triton.{h_in}.started")
    return [helper.make_node("Where", ["triton.START.mask", f"triton.{h_in}.zero", h_in],
                             [f"triton.{h_in}.started"], name=f"triton.{h_in}.start")]


def _ready_gate(graph, h_in: str, h_out: str) -> None:
    """Graph output h_out is what the graph computed where READY is 1, the state handed in (h_in) where it is 0."""
    computed = f"triton.{h_out}.computed"
    _rename(graph, h_out, computed)
    graph.node.append(helper.make_node("Where", ["triton.READY.mask", computed, h_in], [h_out],
                                       name=f"triton.{h_out}.ready"))


def _annotate(model: onnx.ModelProto, meta: dict, stateful: bool) -> None:
    """The metadata says what the model now is: no normalization left to apply, batch-first state."""
    io = {"inputs": {"x": "raw features [batch, seq, F] (normalization folded in)"},
          "outputs": {"y": "raw targets (or logits), batch-first"}}
    if any(vi.name == "lengths" for vi in model.graph.input):
        io["inputs"]["lengths"] = "int32 [batch]: valid steps per item"
    if stateful:
        io["inputs"].update(h0="[batch, layers*directions, H] (Triton's implicit state)", c0="as h0")
        io["inputs"].update(START="int32 [batch, 1]: 1 starts the sequence from zero state",
                            READY="int32 [batch, 1]: 0 hands the state back unchanged (a slot without a request)")
        io["outputs"].update(hn="[batch, layers*directions, H], fed back as h0", cn="as hn")
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata.encode({"normalization": None, "io": io}))
    del model.metadata_props[:]
    helper.set_model_props(model, props)


def _tensor(vi) -> TensorSpec:
    t = vi.type.tensor_type
    if t.elem_type not in TRITON_TYPES:
        raise TritonModelError(f"tensor {vi.name} has ONNX type {t.elem_type}; expected float32 or int32")
    dims = tuple(d.dim_value if d.dim_value else -1 for d in list(t.shape.dim)[1:])
    if not dims:  # [batch] alone: Triton needs a non-empty dims, the model gets the [] reshape back
        return TensorSpec(vi.name, TRITON_TYPES[t.elem_type], (1,), ())
    return TensorSpec(vi.name, TRITON_TYPES[t.elem_type], dims)


def _spec(model: onnx.ModelProto) -> ModelSpec:
    state_names = {n for pair in STATES for n in pair}
    control_names = {name for name, _ in CONTROLS}
    inputs = tuple(_tensor(vi) for vi in model.graph.input if vi.name not in state_names | control_names)
    outputs = tuple(_tensor(vi) for vi in model.graph.output if vi.name not in state_names)
    by_name = {vi.name: vi for vi in model.graph.input}
    states = tuple((i, o, _tensor(by_name[i]).dims) for i, o in STATES if i in by_name)
    peepholes = has_peepholes(model)
    precision = model_precision(model)  # _annotate keeps the export's quantization and dtype metadata
    controls = tuple((name, kind) for name, kind in CONTROLS if name in by_name)
    return ModelSpec(inputs, outputs, states, peepholes, precision, controls)


def has_peepholes(model: onnx.ModelProto) -> bool:
    """A native LSTM node with P: ORT's CUDA LSTM kernel has none, so it runs that node on the CPU."""
    return any(n.op_type in PEEPHOLE_OPS and len(n.input) > 7 and n.input[7] for n in all_nodes(model.graph))


def refuse_gpu_peepholes(instance_kind: str, peepholes: bool, subject: str = "this model") -> None:
    """ORT's CUDA LSTM kernel has no peepholes: a native LSTM with P runs on the CPU under KIND_GPU, silently."""
    if instance_kind == "gpu" and peepholes:
        raise TritonModelError(f"{subject} has a native LSTM with peepholes (P), which ONNX Runtime's CUDA "
                               "provider runs on the CPU: re-export with `--form auto --target ort-cuda` for "
                               "--instance-kind gpu")


# -- the check that the rewrite changed nothing but the layout and the normalization

def check_equivalent(model_path, model: onnx.ModelProto, spec: ModelSpec, seed: int = 0) -> float:
    """Run the original (numpy normalization around it) and the rewritten model on random raw input and
    state; raise TritonModelError unless every output agrees within the export's tolerance. A stateful model
    runs twice: with START=0, READY=1 (it must equal the original), and with both set per row (START=1: the
    original from zero state; READY=0: the state handed in comes back). Returns the largest difference."""
    import onnxruntime as ort

    from lstm_onnx.runtimes.tolerances import default_tolerance

    source = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    meta = metadata.decode(source.get_modelmeta().custom_metadata_map)
    rewritten = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = _random_feeds(spec, np.random.default_rng(seed), batch=3, steps=5)
    cases = {"": feeds}
    if spec.controls:  # rows: (START, READY) = (1, 1), (0, 1), (0, 0)
        cases = {"": {**feeds, "START": np.zeros((3, 1), np.int32), "READY": np.ones((3, 1), np.int32)},
                 " with START/READY set per row": {**feeds, "START": np.array([[1], [0], [0]], np.int32),
                                                   "READY": np.array([[1], [1], [0]], np.int32)}}
    tol, worst = default_tolerance(spec.precision), 0.0
    for label, case in cases.items():
        want = _controlled_outputs(source, meta, case)
        try:
            got = dict(zip([o.name for o in rewritten.get_outputs()], rewritten.run(None, case)))
        except Exception as exc:  # onnxruntime's own exception types
            raise TritonModelError(f"the rewritten model does not run: {str(exc).splitlines()[0]}") from None
        for name, ref in want.items():
            if got[name].shape != ref.shape:
                raise TritonModelError(f"the rewritten model's {name} has shape {list(got[name].shape)} where "
                                       f"{model_path} gives {list(ref.shape)}; please report this model")
            diff = float(np.max(np.abs(got[name] - ref)))
            worst = max(worst, diff)
            if not np.allclose(got[name], ref, atol=tol.atol, rtol=tol.rtol):
                raise TritonModelError(f"the rewritten model's {name} differs from {model_path}'s by {diff:.3g}"
                                       f"{label} (tolerance {tol}); please report this model")
    return worst


def _random_feeds(spec: ModelSpec, rng, batch: int, steps: int) -> dict[str, np.ndarray]:
    feeds = {}
    for t in spec.inputs:
        if t.name == "lengths":
            feeds[t.name] = rng.integers(1, steps + 1, batch).astype(np.int32)
        else:
            shape = [batch] + [steps if d == -1 else d for d in t.dims]
            feeds[t.name] = rng.normal(0, 3, shape).astype(_NUMPY[t.data_type])
    for name, _, dims in spec.states:
        feeds[name] = rng.normal(0, 0.5, (batch, *dims)).astype(np.float32)
    return feeds


def _controlled_outputs(source, meta: dict, feeds: dict) -> dict[str, np.ndarray]:
    """_original_outputs with the sequence controls applied in numpy: zero state where START, and the state
    handed in back as the new state where not READY."""
    if "START" not in feeds:
        return _original_outputs(source, meta, feeds)
    start, ready = feeds["START"].astype(bool)[:, :, None], feeds["READY"].astype(bool)[:, :, None]
    started = {h_in: np.where(start, np.float32(0), feeds[h_in]) for h_in, _ in STATES}
    want = _original_outputs(source, meta, {**feeds, **started})
    for h_in, h_out in STATES:
        want[h_out] = np.where(ready, want[h_out], feeds[h_in])
    return want


def _original_outputs(source, meta: dict, feeds: dict) -> dict[str, np.ndarray]:
    """What the original export gives for the rewritten model's feeds, in the rewritten model's layout."""
    cfg = meta.get("config", {}).get("model", {})
    batch_first, head = cfg.get("batch_first", True), cfg.get("head", "last")
    norm = {k: np.asarray(v, np.float32) for k, v in (meta.get("normalization") or {}).items()}
    x = feeds["x"] if not norm else (feeds["x"] - norm["input_mean"]) / norm["input_std"]
    orig = {"x": (x if batch_first else x.transpose(1, 0, 2)).astype(np.float32)}
    if "lengths" in feeds:
        orig["lengths"] = feeds["lengths"]
    for name, _ in STATES:
        if name in feeds:
            orig[name] = np.ascontiguousarray(feeds[name].transpose(1, 0, 2))
    out = dict(zip([o.name for o in source.get_outputs()], source.run(None, orig)))
    y = out["y"] if batch_first or head != "sequence" else out["y"].transpose(1, 0, 2)
    if norm and head != "classify":
        y = y * norm["target_std"] + norm["target_mean"]
    want = {"y": y}
    for _, name in STATES:
        if name in out:
            want[name] = out[name].transpose(1, 0, 2)
    return want
