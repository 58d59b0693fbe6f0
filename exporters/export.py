"""Checkpoint -> ONNX: the shared skeleton (I/O, layout, layers, head, metadata) around a per-form layer."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from lstm_onnx.core import __version__, metadata
from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.core.machine import fingerprint
from lstm_onnx.exporters.errors import ExportError
from lstm_onnx.exporters.forms import AUTO, FORMS, Form, having
from lstm_onnx.exporters.graph import FLOAT, GraphBuilder, final_features
from lstm_onnx.exporters.opsets import check_opset, ir_version_for
from lstm_onnx.exporters.weights import layer_weights
from lstm_onnx.pipeline.checkpoint import Checkpoint
from lstm_onnx.runtimes import capabilities

DTYPES = {"float32": FLOAT, "float16": TensorProto.FLOAT16}
QUANTIZATIONS = ("int8", "int8-static")  # dynamic; static (QDQ, calibrated: exporters/calibration.py)
BLOCKING = (capabilities.WRONG, capabilities.REFUSED)  # cells that make --target refuse an explicit --form


class KnownIssueWarning(UserWarning):
    """The capability table expects the target to run this export slowly, untested, or (overridden) wrongly."""


@dataclass
class ExportOptions:
    form: str = "native"  # a key of exporters.forms.FORMS, or auto (needs target)
    stateful: bool = False  # h0/c0 inputs and hn/cn outputs
    lengths: bool = False  # a per-item `lengths` input (ONNX sequence_lens, or a mask: Form.lengths_by)
    opset: int | None = None
    target: str | None = None  # a runtime of runtimes.capabilities: picks the form for auto, else checks it
    seq_len: int | None = None  # static-shape forms only: the static sequence length
    batch_size: int | None = None  # static-shape forms only: the static batch size (default 1)
    dtype: str = "float32"  # float32 | float16 (computation; I/O stay float32)
    quantize: str | None = None  # int8: dynamic quantization of the weights by onnxruntime
    via: str = "graph"  # graph: built from the weights | torch.onnx: traced by torch.onnx.export(dynamo=True)
    allow_known_wrong: bool = False  # export a form the target computes wrong (or refuses), with a warning
    picked: bool = False  # set by resolve_options: auto picked the form for target
    probe: bool = False  # add the gate traces of core.probe as outputs (Scan forms; see docs/gates.md)


def resolve_options(ckpt: Checkpoint, options: ExportOptions) -> ExportOptions:
    """Check the options against each other, the model and the target; pick the form for `auto`.

    Raises ExportError, also where --target computes the chosen form wrong (see target_warnings).
    """
    cfg = ckpt.model_config
    if options.target:
        try:  # old spellings (ort-cuda) become the canonical key (onnxruntime-cuda)
            options = dataclasses.replace(options, target=capabilities.runtime_key(options.target))
        except KeyError as exc:
            raise ExportError(exc.args[0]) from None
    name, picked = options.form, options.picked
    if name == AUTO:
        if not options.target:
            raise ExportError(f"--form auto needs --target: one of {', '.join(capabilities.RUNTIMES)}")
        name, picked = capabilities.choose_form(options.target, peepholes=cfg.peephole, lengths=options.lengths,
                                                dtype=options.dtype, quantize=_int8_lstm(options)), True
    if name not in FORMS:
        raise ExportError(f"unknown form {name!r}; choose one of: {', '.join(FORMS)}, {AUTO}")
    form = FORMS[name]
    if options.stateful and cfg.bidirectional:
        raise ExportError("--stateful needs a unidirectional model: a bidirectional LSTM reads the whole "
                          "sequence backwards, so it cannot be streamed chunk by chunk")
    batch_size = _static_batch(form, options)
    _check_precision(form, options)
    _check_probe(form, options)
    if options.via not in ("graph", "torch.onnx"):
        raise ExportError(f"unknown --via {options.via!r}; choose graph or torch.onnx")
    if options.via == "torch.onnx" and (not form.via_torch_onnx or options.dtype != "float32"):
        raise ExportError(f"--via torch.onnx makes the {having('via_torch_onnx')} float32 form only; use "
                          f"--via graph for --form {name} --dtype {options.dtype}")
    resolved = dataclasses.replace(options, form=name, batch_size=batch_size, picked=picked)
    target_warnings(ckpt, resolved)
    return resolved


def _static_batch(form: Form, options: ExportOptions) -> int | None:
    """The batch size of a static-shape form (default 1); --seq-len/--batch-size are refused for the others."""
    if form.static_shapes:
        if not options.seq_len or options.seq_len < 1:
            raise ExportError(f"--form {form.name} needs --seq-len N (>= 1): its shapes are static")
        batch_size = options.batch_size or 1
        if batch_size < 1:
            raise ExportError("--batch-size must be >= 1")
        return batch_size
    if options.seq_len is not None or options.batch_size is not None:
        raise ExportError(f"--seq-len and --batch-size only apply to --form {having('static_shapes')} "
                          f"(--form {form.name} keeps batch and sequence dynamic)")
    return None


def _check_probe(form: Form, options: ExportOptions) -> None:
    if not options.probe:
        return
    if not form.scan:
        raise ExportError(f"--probe needs --form {having('scan')}: its Scan body is where the gates are")
    if options.lengths or options.dtype != "float32" or options.quantize or options.via != "graph":
        raise ExportError("--probe traces every step of a float32 graph: drop --lengths, --dtype, --quantize "
                          "and --via torch.onnx")


def _check_precision(form: Form, options: ExportOptions) -> None:
    if options.dtype not in DTYPES:
        raise ExportError(f"unknown dtype {options.dtype!r}; choose one of: {', '.join(DTYPES)}")
    if options.dtype not in form.dtypes:
        others = " or ".join(n for n, f in FORMS.items() if options.dtype in f.dtypes)
        raise ExportError(f"--dtype {options.dtype} needs --form {others}: {form.dtype_limit}")
    if options.quantize is not None:
        if options.quantize not in QUANTIZATIONS:
            raise ExportError(f"unknown quantization {options.quantize!r}; choose one of: "
                              f"{', '.join(QUANTIZATIONS)}")
        if options.dtype != "float32":
            raise ExportError(f"--quantize {options.quantize} quantizes float32 weights: drop --dtype float16")


def target_warnings(ckpt: Checkpoint, options: ExportOptions) -> list[str]:
    """What the capability table says about running this export (resolved options) on options.target.

    Where the target computes the form wrong or refuses it, raises ExportError naming the form to use, unless
    options.allow_known_wrong (then that is the warning). Cells such as "on CPU" or "untested" are warnings.
    """
    if not options.target:
        return []
    peepholes = ckpt.model_config.peephole
    gaps = _gaps(options, peepholes, options.form)
    if not gaps:
        return []
    target, what = options.target, "; ".join(f"{capabilities.FEATURES[f]}: {cell}" for f, cell in gaps.items())
    use = _use(options, peepholes)
    if not any(cell in BLOCKING for cell in gaps.values()):
        return [f"{target} and --form {options.form} of this model: {what}; {use}"]
    wrong = capabilities.WRONG in gaps.values()
    verb = f"computes --form {options.form} wrong" if wrong else f"refuses --form {options.form}"
    if not options.allow_known_wrong:
        raise ExportError(f"{target} {verb} for this model ({what}): {use}, or pass --allow-known-wrong to "
                          "write it anyway")
    then = "its outputs will be wrong and nothing will say so" if wrong else "it will not run the model"
    return [f"--allow-known-wrong: {target} {verb} for this model ({what}): {then}; {use} for right outputs"]


def _int8_lstm(options: ExportOptions) -> bool:
    """Whether the export's LSTM nodes become int8 (dynamic: DynamicQuantizeLSTM). Static QDQ has no int8 LSTM:
    the nodes stay float32, P included, and need of a runtime what float32 ones do."""
    return options.quantize == "int8"


def _gaps(options: ExportOptions, peepholes: bool, name: str) -> dict[str, str]:
    """{feature: cell} for what form `name` of this model needs that the target does not run natively."""
    needs = FORMS[name].needs(peepholes, options.lengths, options.dtype, _int8_lstm(options))
    return capabilities.shortfalls(options.target, needs)


def _use(options: ExportOptions, peepholes: bool) -> str:
    """The fix: the form the target runs best for this model (auto's pick first on a tie), if it beats this one."""
    auto = capabilities.choose_form(options.target, peepholes, options.lengths, options.dtype, _int8_lstm(options))
    names = [n for n in dict.fromkeys([auto, *FORMS]) if options.dtype in FORMS[n].dtypes]
    badness = {n: _badness(_gaps(options, peepholes, n)) for n in names}
    fix = min((n for n in names if n != options.form), key=badness.get, default=None)
    if fix is None or badness[fix] >= badness[options.form]:
        return f"no other form avoids that on {options.target}"
    form = FORMS[fix]
    return (f"use --form {fix}" + (" --seq-len N" if form.static_shapes and not options.seq_len else "")
            + (" --via graph" if options.via == "torch.onnx" and not form.via_torch_onnx else "")
            + (f" (what --form auto --target {options.target} picks)" if fix == auto else ""))


def _badness(gaps: dict[str, str]) -> tuple[int, int]:
    return sum(cell in BLOCKING for cell in gaps.values()), len(gaps)


def build_model(ckpt: Checkpoint, options: ExportOptions, checkpoint_sha256: str = "") -> onnx.ModelProto:
    """The float model (quantization, if asked, comes after: see export_checkpoint)."""
    cfg = ckpt.model_config
    options = resolve_options(ckpt, options)
    opset = check_opset(options.opset)
    if options.via == "torch.onnx":
        from lstm_onnx.exporters.torch_onnx import export_via_torch

        model = export_via_torch(ckpt, dataclasses.replace(options, opset=opset))
        _annotate(model, ckpt, options, opset, checkpoint_sha256)
        return model
    D, H, L = cfg.num_directions, cfg.hidden_size, cfg.num_layers
    static = FORMS[options.form].static_shapes
    g = GraphBuilder("lstm_onnx_pipeline", DTYPES[options.dtype],
                     options.seq_len if static else None, options.batch_size if static else None)
    batch, seq = (options.batch_size, options.seq_len) if static else ("batch", "seq")
    seq_dims = [batch, seq] if cfg.batch_first else [seq, batch]
    x = g.input("x", FLOAT, seq_dims + [cfg.input_size])
    xt = g.op("Transpose", x, perm=[1, 0, 2]) if cfg.batch_first else x  # [S, B, I]
    seq_lens = g.input("lengths", TensorProto.INT32, [batch]) if options.lengths else None
    h0 = c0 = None
    if options.stateful:
        h0 = g.input("h0", FLOAT, [L * D, batch, H])
        c0 = g.input("c0", FLOAT, [L * D, batch, H])
    if g.float_type != FLOAT:  # I/O stay float32, so feeds and the Predictor do not change
        xt = g.op("Cast", xt, to=g.float_type)
        if options.stateful:
            h0, c0 = g.op("Cast", h0, to=g.float_type), g.op("Cast", c0, to=g.float_type)
    layer = FORMS[options.form].lstm_layer()
    if options.probe:
        layer = functools.partial(layer, probe=True)
    sd = ckpt.state_dict
    y_hs, y_cs = [], []
    for k in range(L):
        h0_k = c0_k = None
        if options.stateful:
            start, end, axis = g.ints([k * D], "start"), g.ints([(k + 1) * D], "end"), g.ints([0], "axis0")
            h0_k, c0_k = g.op("Slice", h0, start, end, axis), g.op("Slice", c0, start, end, axis)
        xt, y_h, y_c = layer(g, xt, layer_weights(sd, k, D), k, D, seq_lens, h0_k, c0_k)
        y_hs.append(y_h)
        y_cs.append(y_c)
    _head(g, ckpt, xt, y_hs[-1], batch, seq)
    if options.stateful:
        for name, parts in (("hn", y_hs), ("cn", y_cs)):
            g.output(_to_float(g, g.op("Concat", *parts, axis=0) if L > 1 else parts[0]), name, FLOAT,
                     [L * D, batch, H])
    model = helper.make_model(g.graph(), opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir_version_for(opset), producer_name="lstm-onnx-pipeline",
                              producer_version=__version__)
    _annotate(model, ckpt, options, opset, checkpoint_sha256)
    return model


def _head(g: GraphBuilder, ckpt: Checkpoint, y: str, y_h: str, batch, seq) -> None:
    cfg = ckpt.model_config
    w = _np(ckpt.state_dict["head.weight"])  # [O, D*H]
    b = _np(ckpt.state_dict["head.bias"])
    if cfg.head == "sequence":
        out = g.op("Add", g.op("MatMul", y, g.fconst(w.T.copy(), "head.weight_t")), g.fconst(b, "head.bias"))
        if cfg.batch_first:
            out = g.op("Transpose", out, perm=[1, 0, 2])
        dims = ([batch, seq] if cfg.batch_first else [seq, batch]) + [cfg.output_size]
    else:
        features = final_features(g, y_h, cfg.num_directions)
        out = g.op("Gemm", features, g.fconst(w, "head.weight"), g.fconst(b, "head.bias"), transB=1)
        dims = [batch, cfg.output_size]
    g.output(_to_float(g, out), "y", FLOAT, dims)


def _to_float(g: GraphBuilder, value: str) -> str:
    return value if g.float_type == FLOAT else g.op("Cast", value, to=FLOAT)


def _annotate(model, ckpt: Checkpoint, options: ExportOptions, opset: int, sha256: str,
              accuracy: dict | None = None, int8: dict | None = None) -> None:
    io = {"inputs": {"x": "normalized features, " + ("[batch, seq, F]" if ckpt.model_config.batch_first
                                                     else "[seq, batch, F]")},
          "outputs": {"y": f"{ckpt.model_config.head} head output (normalized targets or logits)"}}
    if options.lengths:
        io["inputs"]["lengths"] = "int32 [batch]: valid steps per item (ONNX sequence_lens)"
    if options.stateful:
        io["inputs"].update(h0="[layers*directions, batch, H] initial hidden state", c0="initial cell state")
        io["outputs"].update(hn="final hidden state, as h0", cn="final cell state, as c0")
    props = metadata.encode({
        "version": __version__, "form": options.form, "config": dataclasses.asdict(ckpt.config),
        "normalization": ckpt.normalization.to_dict(), "feature_names": ckpt.feature_names,
        "target_names": ckpt.target_names, "checkpoint_sha256": sha256, "io": io,
        **({"columns": {**ckpt.columns, "window": ckpt.data_config.window, "horizon": ckpt.data_config.horizon,
                        "difference": ckpt.data_config.difference}} if ckpt.columns else {}),
        **({"series_normalization": {k: v.to_dict() for k, v in ckpt.series_normalization.items()}}
           if ckpt.series_normalization else {}),
        "stateful": options.stateful, "opset": opset, "dtype": options.dtype,
        "quantization": options.quantize or "none", "target": options.target if options.picked else "",
        **({"probe": True} if options.probe else {}),
        **({"seq_len": options.seq_len, "batch_size": options.batch_size}
           if FORMS[options.form].static_shapes else {}),
        **({"accuracy": accuracy} if accuracy else {}), **({"int8": int8} if int8 else {})})
    helper.set_model_props(model, props)


def _np(value) -> np.ndarray:
    return value.detach().cpu().numpy().astype(np.float32) if hasattr(value, "detach") else np.asarray(value)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_checkpoint(ckpt: Checkpoint, out: str | Path, options: ExportOptions | None = None,
                      checkpoint_sha256: str = "", validate: bool = True,
                      warn: Callable[[str], None] | None = None) -> onnx.ModelProto:
    """Build, validate against PyTorch, then write atomically. Nothing is written if validation fails.

    float16 and int8 exports also carry (in metadata `accuracy`) what they cost against float32 on the
    checkpoint's validation set. What the target's capabilities warn about goes to `warn` (default: a
    KnownIssueWarning).
    """
    from lstm_onnx.exporters.calibration import quantize_int8_static
    from lstm_onnx.exporters.precision import INT8_SETTINGS, PrecisionError, accuracy_loss, quantize_int8
    from lstm_onnx.exporters.validate import validate_model

    options = resolve_options(ckpt, options or ExportOptions())
    for line in target_warnings(ckpt, options):
        (warn or _warn)(line)
    model = build_model(ckpt, options, checkpoint_sha256)
    if validate:
        validate_model(model, ckpt, options, options.dtype)
    if options.quantize or options.dtype != "float32":
        float_model = model
        if options.dtype != "float32":
            float_model = build_model(ckpt, dataclasses.replace(options, dtype="float32"), checkpoint_sha256)
        else:
            try:
                model = quantize_int8(model) if options.quantize == "int8" else quantize_int8_static(model, ckpt)
            except PrecisionError as exc:
                raise ExportError(str(exc)) from None
            if validate:
                validate_model(model, ckpt, options, options.quantize)
        accuracy = accuracy_loss(ckpt, float_model, model)
        _annotate(model, ckpt, options, check_opset(options.opset), checkpoint_sha256, accuracy,
                  INT8_SETTINGS.to_metadata() if options.quantize == "int8" else None)
    if validate:
        for key, value in metadata.encode({"validated_on": fingerprint(process=False)}).items():
            model.metadata_props.add(key=key, value=value)
    with atomic_path(out) as tmp:
        onnx.save(model, tmp)
    return model


def _warn(line: str) -> None:
    warnings.warn(line, KnownIssueWarning, stacklevel=3)


def precision_of(options: ExportOptions) -> str:
    """The tolerance key (runtimes.tolerances) of an export."""
    return options.quantize or options.dtype


def export_summary(model: onnx.ModelProto) -> str:
    """One line: form, precision, size, and the accuracy a reduced precision cost."""
    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    lstm = sum(n.op_type == "LSTM" for n in model.graph.node)
    line = (f"form {meta.get('form')}" + (f" (auto for {meta['target']})" if meta.get("target") else "")
            + f", {meta.get('dtype')}" + (f", {meta['quantization']}" if meta.get("quantization") != "none" else "")
            + f", {len(model.graph.node)} nodes ({lstm} LSTM), {model.ByteSize() / 1024:.1f} KiB, "
              f"opset {next(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))}")
    acc = meta.get("accuracy")
    if acc and "metric" in acc:
        line += (f"; validation {acc['metric']} {acc['candidate']:.6g} vs float32 {acc['float32']:.6g} "
                 f"(delta {acc['delta']:+.3g}, max abs {acc['max_abs']:.3g}, {acc['items']} items)")
    elif acc:
        line += f"; accuracy not measured: {acc['skipped']}"
    return line


def export(checkpoint, path: str | Path, form: str = "native", **options) -> onnx.ModelProto:
    """`lstm-pipeline export` from Python: `checkpoint` (a Checkpoint or a checkpoint file) to `path`,
    validated against PyTorch before it is written. `options`: ExportOptions' fields (stateful, lengths,
    opset, target, dtype, quantize, ...)."""
    from lstm_onnx.pipeline.checkpoint import load_checkpoint

    sha256 = ""
    if isinstance(checkpoint, (str, Path)):
        sha256, checkpoint = file_sha256(checkpoint), load_checkpoint(checkpoint)
    return export_checkpoint(checkpoint, path, ExportOptions(form=form, **options), checkpoint_sha256=sha256)
