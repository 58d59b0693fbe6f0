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


ELEMWISE = "elemwise"
# What passes, as Polygraphy's --check-error-stat: elemwise, each element |diff| <= atol + rtol*|baseline| (our
# own rule, as np.allclose; Polygraphy's elemwise passes an element within atol OR within rtol, a little
# stricter); a statistic S, S(|diff|) <= atol OR S(|diff| / |baseline|) <= rtol (Polygraphy's rule; p99 is its
# "quantile" at its default 0.99, linear interpolation as np.percentile).
ERROR_STATS = {
    ELEMWISE: None,
    "max": np.max,
    "mean": np.mean,
    "median": np.median,
    "p99": lambda a: np.percentile(a, 99),
}


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
    p50_abs: float = float("nan")  # median |diff|
    p99_abs: float = float("nan")  # np.percentile(|diff|, 99)
    error_stat: str = ELEMWISE  # what `passed` checked: see ERROR_STATS

    @property
    def result(self) -> str:
        if self.known_wrong:
            return (f"XFAIL, known: {self.known_wrong}" if not self.passed
                    else f"PASS, unexpectedly (capability table says: {self.known_wrong})")
        return ("PASS" if self.passed else "FAIL") + (f" ({self.note})" if self.note else "")


def compare_output(runner: str, output: str, actual: np.ndarray | None, expected: np.ndarray,
                   tol: Tolerance, error_stat: str = ELEMWISE) -> OutputComparison:
    if error_stat not in ERROR_STATS:
        raise ValueError(f"error statistic {error_stat!r}: choose one of {', '.join(ERROR_STATS)}")
    row = _compare(runner, output, actual, expected, tol, error_stat)
    row.error_stat = error_stat
    return row


def _compare(runner, output, actual, expected, tol: Tolerance, error_stat: str) -> OutputComparison:
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
    rel = diff / np.maximum(np.abs(e), 1e-12)
    max_rel = float(rel.max()) if diff.size else 0.0
    p50_abs, p99_abs = (float(v) for v in np.percentile(diff, [50, 99])) if diff.size else (0.0, 0.0)
    stat, note = ERROR_STATS[error_stat], ""
    if stat is None:
        passed = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(e)))
    else:
        s_abs, s_rel = (float(stat(d)) if d.size else 0.0 for d in (diff, rel))
        passed = s_abs <= tol.atol or s_rel <= tol.rtol
        if not passed:
            note = (f"{error_stat} |diff| {s_abs:.3g} > atol {tol.atol:g} and {error_stat} |diff|/|baseline| "
                    f"{s_rel:.3g} > rtol {tol.rtol:g}")
    return OutputComparison(runner, output, max_abs, mean_abs, max_rel, tol.atol, tol.rtol, passed, note,
                            p50_abs=p50_abs, p99_abs=p99_abs)


def compare_outputs(runner: str, actual: dict, expected: dict, tolerances: Tolerances,
                    names: list[str] | None = None, error_stat: str = ELEMWISE) -> list[OutputComparison]:
    """Compare `names` (default: every reference output) of `actual` with `expected`."""
    return [compare_output(runner, n, actual.get(n), expected[n], tolerances[n], error_stat)
            for n in (names or expected)]


def tolerance_text(row: OutputComparison) -> str:
    """atol/rtol, and the statistic they bound where it is not elementwise."""
    return f"{row.atol:g}/{row.rtol:g}" + ("" if row.error_stat == ELEMWISE else f" on {row.error_stat}")


STAT_HEAD = ["max abs", "mean abs", "p50 abs", "p99 abs", "max rel"]


def row_cells(r: OutputComparison) -> list[str]:
    """A row's STAT_HEAD cells, then its tolerance and result: what every table of rows shows."""
    return [f"{r.max_abs:.3g}", f"{r.mean_abs:.3g}", f"{r.p50_abs:.3g}", f"{r.p99_abs:.3g}", f"{r.max_rel:.3g}",
            tolerance_text(r), r.result]


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
        head = ["runner", "output", *STAT_HEAD, "tolerance", "result"]
        body = [[r.runner, r.output, *row_cells(r)] for r in self.rows]
        blank = [""] * (len(head) - 3)
        body += [[name, "-", *blank, f"ERROR: {why}"] for name, why in self.errors.items()]
        body += [[name, "-", *blank, f"skipped: {why}"] for name, why in self.skipped.items()]
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
