"""Describe an ONNX model: I/O, node counts, LSTM nodes (is P present?), our metadata."""
from __future__ import annotations

from collections import Counter

from lstm_onnx.core import metadata
from lstm_onnx.runtimes import capabilities

LSTM_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


def _dims(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def contract(model) -> dict:
    """What an app in any language needs to feed the model: each input and output with its element type,
    dims (names are symbolic: batch, seq) and meaning (metadata `io`), and the metadata checked against the
    shipped schema (docs/model-format.md)."""
    from onnx import helper

    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    meaning = meta.get("io") or {}

    def side(values, key):
        return [{"name": vi.name, "dtype": helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name,
                 "dims": _dims(vi), "meaning": (meaning.get(key) or {}).get(vi.name, "")} for vi in values]

    inits = {t.name for t in model.graph.initializer}
    return {"inputs": side([vi for vi in model.graph.input if vi.name not in inits], "inputs"),
            "outputs": side(model.graph.output, "outputs"),
            "metadata_schema": f"lstm_onnx.core/{metadata.SCHEMA_FILE}",
            "metadata_problems": metadata_problems(meta)}


def metadata_problems(meta: dict) -> list[str]:
    """Where decoded metadata breaks the schema, one line each; ["not checked: ..."] without jsonschema."""
    try:
        import jsonschema
    except ImportError:
        return ["not checked: pip install jsonschema"]
    validator = jsonschema.Draft202012Validator(metadata.schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or 'metadata'}: {e.message}"
            for e in sorted(validator.iter_errors(meta), key=lambda e: list(map(str, e.absolute_path)))]


def describe(model) -> dict:
    from onnx import helper

    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    lstms = []
    for node in model.graph.node:
        if node.op_type == "LSTM":
            present = {n: node.input[k] for k, n in enumerate(LSTM_INPUTS) if k < len(node.input) and node.input[k]}
            lstms.append({"name": node.name, "inputs": {n: inits.get(v, v) for n, v in present.items()},
                          "attributes": {a.name: helper.get_attribute_value(a) for a in node.attribute},
                          "peepholes": "P" in present})
    for info in lstms:
        info["attributes"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info["attributes"].items()}
    from lstm_onnx.runtimes.int8_gemm import widest_pair_sum

    return {
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "inputs": {vi.name: _dims(vi) for vi in model.graph.input},
        "outputs": {vi.name: _dims(vi) for vi in model.graph.output},
        "nodes": dict(Counter(n.op_type for n in model.graph.node)),
        "lstm": lstms,
        "metadata": metadata.decode({p.key: p.value for p in model.metadata_props}),
        "needs": capabilities.model_features(model),
        # runtime -> what stops it ([] = runs natively); none for an .ort file, whose nodes onnx cannot read
        "native_runtimes": capabilities.native_support(model) if model.graph.node else {},
        "int8_pair_sum": widest_pair_sum(model) if model.graph.node else None,
        "contract": contract(model),
    }


def format_int8(settings: dict | None, pair_sum: int) -> str:
    """One line: the int8 settings (metadata `int8`) and whether a CPU without VNNI can saturate on them."""
    from lstm_onnx.runtimes.int8_gemm import INT16_MAX

    if settings:
        text = (f"{settings['weights']} weights (LSTM {settings['lstm_weights']}), "
                + ("per channel" if settings["per_channel"] else "per tensor")
                + (", reduce_range (7-bit)" if settings["reduce_range"] else ", full 8-bit")
                + f"; activations {settings['activations']}")
    else:
        text = "settings not recorded"
    verdict = (f"cannot saturate without VNNI ({pair_sum} <= {INT16_MAX})" if pair_sum <= INT16_MAX else
               f"CAN saturate on CPUs without VNNI (AVX2, AVX-512 without VNNI): {pair_sum} > {INT16_MAX}; "
               "re-export with --quantize int8")
    return f"int8: {text}; widest int16 pair sum {verdict}"


def format_description(info: dict) -> str:
    io = {io["name"]: io for io in info["contract"]["inputs"] + info["contract"]["outputs"]}
    lines = [f"opset {info['opset']}, IR {info['ir_version']}" if info["nodes"] else
             "ORT format: inputs, outputs and metadata only (its nodes are not readable here)", "inputs:"]
    lines += [f"  {k}: {io[k]['dtype']} {v}" for k, v in info["inputs"].items()]
    lines += ["outputs:"] + [f"  {k}: {io[k]['dtype']} {v}" for k, v in info["outputs"].items()]
    lines += ["nodes: " + ", ".join(f"{k}×{v}" for k, v in sorted(info["nodes"].items()))] if info["nodes"] else []
    for lstm in info["lstm"]:
        attrs = ", ".join(f"{k}={v}" for k, v in lstm["attributes"].items())
        lines.append(f"LSTM {lstm['name']}: {attrs}; P {'present ' + str(lstm['inputs']['P']) if lstm['peepholes'] else 'absent'}")
    support = info.get("native_runtimes", {})
    if support:
        lines.append("needs: " + (", ".join(capabilities.FEATURES[f] for f in info["needs"]) or "plain ops only"))
        lines.append("runs natively on: " + (", ".join(k for k, why in support.items() if not why) or "none"))
        lines += [f"  not {k}: {'; '.join(why)}" for k, why in support.items() if why]
    problems = info["contract"]["metadata_problems"]
    if problems:
        lines += ["metadata against the schema:"] + [f"  {p}" for p in problems]
    meta = info["metadata"]
    if info.get("int8_pair_sum") is not None:
        lines.append(format_int8(meta.get("int8"), info["int8_pair_sum"]))
    if meta:
        lines.append("metadata:")
        for k, v in meta.items():
            text = str(v)
            lines.append(f"  {k}: {text if len(text) < 100 else text[:97] + '...'}")
    return "\n".join(lines)
