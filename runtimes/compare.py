"""Compare runner outputs with a reference, per output, and report: table, markdown or JSON."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from lstm_onnx.runtimes.tolerances import Tolerance, default_tolerance


class Tolerances:
    """Per-output tolerances with a default: `Tolerances(default, {"hn": Tolerance(...)})`."""

    def __init__(self, default: Tolerance | None = None, per_output: dict[str, Tolerance] | None = None):
        self.default = default or default_tolerance("float32")
        self.per_output = dict(per_output or {})

    def __getitem__(self, output: str) -> Tolerance:
        return self.per_output.get(output, self.default)


@dataclass
class OutputComparison:
    runner: str
    output: str
    max_abs: float
    mean_abs: float
    max_rel: float
    atol: float
    rtol: float
    passed: bool
    note: str = ""
    known_wrong: str = ""  # why the capability table expects this runner to fail; then it does not fail the run

    @property
    def result(self) -> str:
        if self.known_wrong:
            return (f"XFAIL, known: {self.known_wrong}" if not self.passed
                    else f"PASS, unexpectedly (capability table says: {self.known_wrong})")
        return ("PASS" if self.passed else "FAIL") + (f" ({self.note})" if self.note else "")


def compare_output(runner: str, output: str, actual: np.ndarray | None, expected: np.ndarray,
                   tol: Tolerance) -> OutputComparison:
    nan = float("nan")
    if actual is None:
        return OutputComparison(runner, output, nan, nan, nan, tol.atol, tol.rtol, False, "output missing")
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return OutputComparison(runner, output, nan, nan, nan, tol.atol, tol.rtol, False,
                                f"shape {list(actual.shape)} != reference {list(expected.shape)}")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(a - e)
    if not np.isfinite(a).all():
        return OutputComparison(runner, output, nan, nan, nan, tol.atol, tol.rtol, False, "non-finite values")
    max_abs = float(diff.max()) if diff.size else 0.0
    mean_abs = float(diff.mean()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(e), 1e-12)).max()) if diff.size else 0.0
    passed = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(e)))
    return OutputComparison(runner, output, max_abs, mean_abs, max_rel, tol.atol, tol.rtol, passed)


def compare_outputs(runner: str, actual: dict, expected: dict, tolerances: Tolerances,
                    names: list[str] | None = None) -> list[OutputComparison]:
    """Compare `names` (default: every reference output) of `actual` with `expected`."""
    return [compare_output(runner, n, actual.get(n), expected[n], tolerances[n]) for n in (names or expected)]


@dataclass
class ParityReport:
    reference: str
    rows: list[OutputComparison] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # runner -> why
    errors: dict[str, str] = field(default_factory=dict)  # runner -> what failed while running
    warnings: list[str] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # a description of the feeds

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed or r.known_wrong for r in self.rows) and not self.errors

    def to_dict(self) -> dict:
        return {"reference": self.reference, "passed": self.passed, "inputs": self.inputs,
                "rows": [asdict(r) for r in self.rows], "skipped": self.skipped, "errors": self.errors,
                "warnings": self.warnings}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)

    def _lines(self, sep: str, markdown: bool) -> list[str]:
        head = ["runner", "output", "max abs", "mean abs", "max rel", "tolerance", "result"]
        body = [[r.runner, r.output, f"{r.max_abs:.3g}", f"{r.mean_abs:.3g}", f"{r.max_rel:.3g}",
                 f"{r.atol:g}/{r.rtol:g}", r.result]
                for r in self.rows]
        body += [[name, "-", "", "", "", "", f"ERROR: {why}"] for name, why in self.errors.items()]
        body += [[name, "-", "", "", "", "", f"skipped: {why}"] for name, why in self.skipped.items()]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        fmt = lambda row: sep.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]
        if markdown:
            lines = ["| " + line.replace(sep, " | ") + " |" for line in lines]
        return lines

    def to_table(self) -> str:
        lines = [f"parity against {self.reference}"] + self._lines("  ", False)
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        md = [f"Parity against **{self.reference}**", ""] + self._lines(" | ", True)
        md += [""] + [f"> **Warning:** {w}" for w in self.warnings]
        return "\n".join(md + ["", "**PASSED**" if self.passed else "**FAILED**"])
