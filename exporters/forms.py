"""The export forms, one row each: the graph builder and the facts every per-form rule reads.

The CLI's --form choices, option validation, the --target check, validation and the bench all read FORMS,
so a new form is a builder module plus a row here. `auto` is not a form: it picks one of these rows for a
target from the capability table (runtimes.capabilities). This module imports neither torch nor onnx, so the
CLI can build its options from it on a deploy-only install.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from lstm_onnx.runtimes.capabilities import FEATURES, native_needs

AUTO = "auto"
DTYPES = ("float32", "float16")  # the precisions of the computation; I/O stay float32 in every form


@dataclass(frozen=True)
class Form:
    name: str
    summary: str  # one clause for --form's help
    builder: str  # module of lstm_onnx.exporters with lstm_layer(g, x, weights, layer, D, seq_lens, h0, c0)
    static_shapes: bool = False  # batch and sequence are fixed at export time (--seq-len, --batch-size)
    dtypes: tuple[str, ...] = DTYPES
    dtype_limit: str = ""  # why the dtypes it lacks are refused
    via_torch_onnx: bool = False  # torch.onnx.export can produce it (--via torch.onnx)
    cuda_graph_capturable: bool = False  # ORT CUDA can capture it: static shapes, no Scan/Loop, no CPU nodes
    lstm_node: bool = False  # holds ONNX LSTM nodes, so P, sequence_lens and int8 are the runtime's LSTM's job
    scan: bool = False  # loops over time in a Scan node
    lengths_by: str = "mask"  # how `lengths` is applied: "sequence_lens" (the LSTM input) or "mask" (per step)

    def lstm_layer(self):
        return importlib.import_module(f"lstm_onnx.exporters.{self.builder}").lstm_layer

    def needs(self, peepholes: bool, lengths: bool = False, dtype: str = "float32",
              quantize: bool = False) -> list[str]:
        """What an export of this form needs of a runtime, as capability FEATURES keys."""
        if quantize and self.lstm_node:  # each LSTM becomes a DynamicQuantizeLSTM: the int8 cell covers it all
            found = {"int8"}
        else:
            found = set(native_needs(peepholes and self.lstm_node, lengths and self.lengths_by == "sequence_lens"))
        if self.scan:
            found.add("scan")
        if dtype == "float16":
            found.add("float16")
        return [f for f in FEATURES if f in found]

    def describe(self) -> str:
        shapes = "static batch and sequence" if self.static_shapes else "dynamic batch and sequence"
        return (f"{self.name}: {self.summary}; {shapes}; {'/'.join(self.dtypes)}; lengths by {self.lengths_by}; "
                f"CUDA graph capture {'yes' if self.cuda_graph_capturable else 'no'}")


FORMS: dict[str, Form] = {f.name: f for f in (
    Form("native", "one LSTM op per layer, with P", "native", dtypes=("float32",),
         dtype_limit="ONNX Runtime's CPU LSTM kernel is float32-only, and ORT CUDA moves an LSTM with P to the CPU",
         via_torch_onnx=True, lstm_node=True, lengths_by="sequence_lens"),
    Form("decomposed", "MatMul + Scan (no LSTM op)", "decomposed", scan=True),
    Form("unrolled", "every step spelled out, static shapes (needs --seq-len)", "unrolled", static_shapes=True,
         cuda_graph_capturable=True),
)}


def choices() -> list[str]:
    """The --form values: every form, then auto."""
    return [*FORMS, AUTO]


def having(fact: str) -> str:
    """The forms whose boolean `fact` (a Form field) is on, as "a or b" for messages and help texts."""
    return " or ".join(name for name, f in FORMS.items() if getattr(f, fact))


def help_text() -> str:
    return " ".join(f"{f.name}: {f.summary}." for f in FORMS.values()) + f" {AUTO}: chosen for --target."

