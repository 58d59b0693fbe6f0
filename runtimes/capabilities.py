"""The ONE table of what each runtime runs natively. It drives `export --form auto`, `inspect` and the
README's table and docs/runtimes.md's (render_markdown; a test keeps both equal to it).

A cell is YES (implemented and right), or says how it goes wrong. Only YES counts as native support.
Each row records the runtime version its cells were measured on, and the int8 cell the instruction set
(int8 GEMMs sum differently with and without VNNI). `lstm-pipeline capabilities --measure`
(bench/measure_capabilities.py) measures every row whose runtime is installed and prints where it differs.
"""
from __future__ import annotations

from dataclasses import dataclass

from lstm_onnx.runtimes.onnx_graph import all_nodes

YES = "yes"
REFUSED = "refused"  # a clear error at load or run time
WRONG = "wrong"  # accepted, but the outputs are wrong and nothing says so
CPU = "on CPU"  # runs, but the node is placed on the CPU (slow)
UNTESTED = "untested"
NOT_RECORDED = "not recorded"

FEATURES = {
    "peepholes": "LSTM with P",
    "sequence_lens": "LSTM sequence_lens",
    "layout_1": "LSTM layout=1",
    "scan": "Scan",
    "float16": "float16 plain ops",
    "int8": "int8 LSTM (DynamicQuantizeLSTM)",
}


@dataclass(frozen=True)
class Runtime:
    name: str
    peepholes: str
    sequence_lens: str
    layout_1: str
    scan: str
    float16: str
    int8: str
    fallback: str  # the form `auto` picks when the native LSTM cannot do what the model needs
    why: str
    measured_on: str = NOT_RECORDED  # `package version` the cells were measured on
    int8_isa: str = ""  # the CPU extension the int8 cell was measured on (bench/measure_capabilities.int8_isa)


# Keyed by the runner names of runtimes/registry.py (onnx2torch and onnxruntime-web have no runner); old spellings
# are its aliases.
RUNTIMES: dict[str, Runtime] = {
    "onnxruntime-cpu": Runtime(
        "ONNX Runtime, CPU EP", peepholes=YES, sequence_lens=YES, layout_1=REFUSED, scan=YES,
        float16=YES, int8=YES, fallback="decomposed",
        why="its LSTM kernel implements P and sequence_lens (float32 only; float16 runs as plain ops); "
            "layout=1 is refused", measured_on="onnxruntime 1.32.0", int8_isa="avx512_vnni"),
    "onnxruntime-cuda": Runtime(
        "ONNX Runtime, CUDA EP", peepholes=CPU, sequence_lens=YES, layout_1=REFUSED, scan=YES,
        float16=YES, int8=UNTESTED, fallback="decomposed",
        why="an LSTM node with P is silently placed on the CPU (H100, H 512, B 256, S 100: 60 ms; "
            "the Scan form ran entirely on CUDA in 14.5 ms; cuDNN LSTM without P 1.6 ms)"),
    "openvino-cpu": Runtime(
        "OpenVINO 2026.4 (ONNX frontend)", peepholes=WRONG, sequence_lens=WRONG, layout_1=WRONG, scan=YES,
        float16=YES, int8=REFUSED, fallback="decomposed",
        why="the frontend reads P, then builds an LSTM without peepholes: wrong outputs, no error; "
            "sequence_lens and layout=1 give wrong outputs too; DynamicQuantizeLSTM with P is refused",
        measured_on="openvino 2026.4.1"),
    "onnxruntime-tensorrt": Runtime(
        "TensorRT (ONNX parser)", peepholes=YES, sequence_lens=UNTESTED, layout_1=UNTESTED, scan=UNTESTED,
        float16=UNTESTED, int8=REFUSED, fallback="unrolled",
        why="the parser implements P"),
    "onnx-reference": Runtime(
        "onnx.reference (ReferenceEvaluator)", peepholes=YES, sequence_lens=WRONG, layout_1=YES, scan=YES,
        float16=YES, int8=REFUSED, fallback="decomposed",
        why="its LSTM ignores sequence_lens (the runner probes the installed onnx); the decomposed form's "
            "masking runs correctly", measured_on="onnx 1.23.2"),
    "onnx2torch": Runtime(
        "onnx2torch", peepholes=REFUSED, sequence_lens=UNTESTED, layout_1=UNTESTED, scan=UNTESTED,
        float16=UNTESTED, int8=REFUSED, fallback="unrolled",
        why="refuses an LSTM with P; the unrolled form uses only elementwise ops, MatMul, Gather, Concat"),
    "onnxruntime-web": Runtime(  # measured: tests/examples/test_web_page.py (headless Chromium, docs/embedding.md)
        "onnxruntime-web 1.30 (WASM)", peepholes=YES, sequence_lens=YES, layout_1=REFUSED, scan=YES, float16=YES,
        int8=YES, fallback="decomposed",
        why="the CPU EP's kernels, in WASM; WebGPU unmeasured (no adapter in headless Chromium)"),
    "opencv": Runtime(  # measured: tests/runtimes/test_opencv.py (docs/runtimes.md)
        "OpenCV 5.1 DNN", peepholes=YES, sequence_lens=WRONG, layout_1=YES, scan=YES, float16=REFUSED,
        int8=REFUSED, fallback="decomposed",
        why="its LSTM ignores sequence_lens (matches full lengths); P right since opencv#29931; float16 "
            "MatMul and DynamicQuantizeLSTM refused", measured_on="opencv 5.1.0"),
}


def runtime_key(key: str) -> str:
    """The canonical key for `key` (an old spelling such as ort-cuda maps to onnxruntime-cuda); KeyError if
    there is none."""
    from lstm_onnx.runtimes.registry import UnknownRunner, resolve

    try:
        return resolve(key, RUNTIMES, "target")
    except UnknownRunner as exc:
        raise KeyError(str(exc)) from None


def runtime(key: str) -> Runtime:
    return RUNTIMES[runtime_key(key)]


def native_needs(peepholes: bool, lengths: bool, quantize: bool = False) -> list[str]:
    """The native-LSTM features a model with these options relies on."""
    return [f for f, on in (("peepholes", peepholes), ("sequence_lens", lengths), ("int8", quantize)) if on]


def choose_form(target: str, peepholes: bool, lengths: bool = False, dtype: str = "float32",
                quantize: bool = False) -> str:
    """native if the target's LSTM does all the model needs in float32, else the target's fallback form."""
    rt = runtime(target)
    if dtype == "float32" and all(getattr(rt, f) == YES for f in native_needs(peepholes, lengths, quantize)):
        return "native"
    return rt.fallback


def shortfalls(target: str, needs) -> dict[str, str]:
    """{feature: the target's cell} for each of `needs` (FEATURES keys) that it does not run natively."""
    rt = runtime(target)
    return {f: getattr(rt, f) for f in needs if getattr(rt, f) != YES}


def model_features(model) -> list[str]:
    """What an onnx.ModelProto needs of a runtime, as FEATURES keys."""
    from onnx import TensorProto

    needs: set[str] = set()
    for node in all_nodes(model.graph):
        if node.op_type == "LSTM":
            if len(node.input) > 7 and node.input[7]:
                needs.add("peepholes")
            if len(node.input) > 4 and node.input[4]:
                needs.add("sequence_lens")
            if any(a.name == "layout" and a.i == 1 for a in node.attribute):
                needs.add("layout_1")
        elif node.op_type == "Scan":
            needs.add("scan")
        elif node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in node.attribute):
            needs.add("float16")
        if node.domain == "com.microsoft":
            needs.add("int8")
    return [f for f in FEATURES if f in needs]


def native_support(model) -> dict[str, list[str]]:
    """runtime key -> what stops it running `model` natively ([] = runs natively)."""
    needs = model_features(model)
    return {key: [f"{FEATURES[f]}: {getattr(rt, f)}" for f in needs if getattr(rt, f) != YES]
            for key, rt in RUNTIMES.items()}


def render_markdown(why: bool = True) -> str:
    """The capability table: in full (docs/runtimes.md), or without the why column (the README's)."""
    head = ["target", "runtime"] + list(FEATURES.values()) + ["auto, P", "auto, no P"] + (["why"] if why else [])
    rows = [[f"`{key}`", rt.name] + [getattr(rt, f) for f in FEATURES]
            + [choose_form(key, True), choose_form(key, False)] + ([rt.why] if why else [])
            for key, rt in RUNTIMES.items()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def measured_on(rt: Runtime) -> str:
    """The version a row was measured on, and the instruction set of its int8 cell where that was measured."""
    return rt.measured_on + (f" (int8 on {rt.int8_isa})" if rt.int8_isa else "")


def render_text(rows=None) -> str:
    """The table with the version each row was measured on, as `lstm-pipeline capabilities` prints it.
    `rows`: {key: Runtime}, by default the stored table."""
    from lstm_onnx.core.tables import grid

    rows = RUNTIMES if rows is None else rows
    head = ["target"] + list(FEATURES.values()) + ["measured on"]
    return "\n".join(grid(head, [[key] + [getattr(rt, f) for f in FEATURES] + [measured_on(rt)]
                                 for key, rt in rows.items()]))


if __name__ == "__main__":  # python -m lstm_onnx.runtimes.capabilities [--readme]: the tables for the docs
    import sys

    print(render_markdown(why="--readme" not in sys.argv))
