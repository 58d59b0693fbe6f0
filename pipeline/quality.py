"""Data quality of a CSV run: what `check-data` reports and what `train` refuses before it starts.

Every check looks at the values the model would see: the configured columns, after `data.missing` and
`data.difference`, split by time as training splits them. Errors are problems that make training
meaningless (train refuses); warnings are findings a user should look at. numpy only (no torch).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lstm_onnx.core.tables import grid
from lstm_onnx.pipeline.config import DataConfig
from lstm_onnx.core.series import groups, is_date_column, parse_times
from lstm_onnx.pipeline.data import FLOAT32_MAX, CSVError, _rows, column_roles, interpolate_missing, split_sizes

# Iglewicz & Hoaglin's cut for the modified z-score 0.6745 (x - median) / MAD.
ROBUST_Z = 3.5
# A KS statistic above this between train and a later split: a third of the distribution has moved. Time
# series are autocorrelated, so KS p-values would be far too confident; the statistic alone is reported.
DRIFT_KS = 0.3
# A feature this correlated with a target shifted forward in time is a (near) copy of the future.
LEAK_CORR = 0.9999
# Overlapping steps a leak needs: for n independent points r^2 ~ Beta(1/2, (n - 2)/2), so P(r > LEAK_CORR) is
# about (2e-4)^((n-2)/2); at n = 4 it is 1 in 20,000 (a 500-column file then flags dozens of pairs by chance),
# at n = 10 about 1e-15, nothing even over 20,000 x 20,000 pairs.
MIN_LEAK_ROWS = 10
# Multiply-adds the leakage scan may spend; past it rows are subsampled. 1,000,000 rows x 10 x 10 columns x 51
# shifts (5.1e9) fit: 5.4 s on a shared 2-core VM at load 7, where every other row (the next budget down) took 7.5 s.
LEAK_BUDGET = 8_000_000_000
# A scan over at least this many rows per shift finds what the full one finds: it is not reported as bounded.
LEAK_QUIET_ROWS = 10_000
LEAK_BLOCK = 1 << 22  # correlations held at once (32 MB)
MAX_LEAK_FINDINGS = 20
MISSING_TEXT = ("", "na", "nan", "null", "none")
SPLITS = ("train", "val", "test")


@dataclass
class Finding:
    severity: str  # error | warning
    check: str
    column: str
    message: str
    series: str = ""  # data.series_column: the series it was found in ("" for the whole file)


@dataclass
class ColumnStats:
    name: str
    role: str  # feature | target | feature+target
    missing: int
    minimum: float
    maximum: float
    mean: float
    std: float
    outliers: int
    drift: dict[str, float] = field(default_factory=dict)  # KS statistic of val and test against train


@dataclass
class QualityReport:
    source: str
    rows: int
    columns: list[ColumnStats]
    findings: list[Finding]
    splits: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # for the plot

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict:
        return {"source": self.source, "rows": self.rows, "columns": [asdict(c) for c in self.columns],
                "findings": [asdict(f) for f in self.findings],
                "errors": len(self.errors), "warnings": len(self.warnings)}

    def lines(self) -> list[str]:
        head = ["column", "role", "missing", "min", "max", "mean", "std", "outliers", "KS val", "KS test"]
        rows = [[c.name, c.role, str(c.missing), f"{c.minimum:.4g}", f"{c.maximum:.4g}", f"{c.mean:.4g}",
                 f"{c.std:.4g}", str(c.outliers)] + [_ks(c.drift.get(s)) for s in ("val", "test")]
                for c in self.columns]
        out = [f"{self.source}: {self.rows} rows", *grid(head, rows), ""]
        out += [f"{f.severity.upper()} [{f.check}] {f'series {f.series!r}, ' if f.series else ''}{f.column}: "
                f"{f.message}" for f in self.findings]
        out.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return out


def _ks(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@dataclass
class _Table:
    names: list[str]  # the model's columns: inputs, then targets that are not inputs
    raw: np.ndarray  # [rows, columns] float64, NaN where missing or not a number
    lines: np.ndarray  # the CSV line of each row
    bad_text: dict[str, tuple[int, str, int]]  # column -> (first line, text, count) of non-numbers
    time: list[str] | None
    time_column: str = ""
    series: list[str] | None = None  # each row's series id (data.series_column)

    def rows(self, idx: np.ndarray) -> "_Table":
        """The table of rows `idx` (one series)."""
        bad = {n: v for n, v in self.bad_text.items() if np.isin(v[0], self.lines[idx])}
        return _Table(self.names, self.raw[idx], self.lines[idx], bad,
                      [self.time[i] for i in idx] if self.time is not None else None, self.time_column)


def check_csv(cfg: DataConfig, header: list[str] | None = None, body: list | None = None) -> QualityReport:
    """The quality report of `cfg`'s CSV (task 'csv'); CSVError when the file cannot be read at all.

    With data.series_column each series is checked on its own (time order, missing values, outliers, drift,
    leakage, as training splits and windows it), and its findings name it; the column table covers all rows."""
    table = _read(cfg, header, body)
    inputs = list(dict.fromkeys(cfg.features)) or table.names  # as pipeline.data.csv_dataset reads them
    targets = list(cfg.targets) or inputs
    findings = _text_findings(table) + _overflow_findings(table)
    if table.time_column in inputs:
        findings.append(Finding("warning", "time", table.time_column, "the time column is a model input: list "
                                "data.features without it"))
    roles = {n: "+".join(r for r, names in (("feature", inputs), ("target", targets)) if n in names)
             for n in table.names}
    parts = groups(table.series, len(table.raw))
    views = []
    for label, rows in parts:
        part = table.rows(rows) if table.series is not None else table
        found = _time_findings(part, cfg)
        values, lines, more = _model_view(part, cfg)
        found += more
        views.append((values, lines, _split(values, cfg)))
        if table.series is not None:
            found += _column_findings(part, values, lines, views[-1][2], roles, series=True)[0]
        found += _leakage(values, table.names, inputs, targets, cfg)
        findings += [Finding(f.severity, f.check, f.column, f.message, label) for f in found]
    values = np.concatenate([v[0] for v in views])
    lines = np.concatenate([v[1] for v in views])
    splits = {s: np.concatenate([v[2][s] for v in views]) for s in SPLITS}
    found, stats = _column_findings(table, values, lines, splits, roles)
    # across series, only a target that never changes in any of them: the rest was found per series
    findings += found if table.series is None else [f for f in found if f.check == "constant"]
    columns = []
    for j, name in enumerate(table.names):
        col = values[:, j]
        outliers, drift = stats[name]
        columns.append(ColumnStats(name, roles[name], int(np.isnan(table.raw[:, j]).sum()),
                                   *_moments(col[np.isfinite(col)]), outliers, drift))
    return QualityReport(str(cfg.csv), len(table.raw), columns, findings, splits)


def _column_findings(table: _Table, values: np.ndarray, lines: np.ndarray, splits: dict, roles: dict,
                     series: bool = False) -> tuple[list[Finding], dict]:
    """Outliers, constant columns and drift, and per column (outlier count, drift) for its ColumnStats; in one
    series of many (`series`), a constant target is a warning (the series teaches nothing, the others may)."""
    findings, stats = [], {}
    for j, name in enumerate(table.names):
        col = values[:, j]
        out, worst = _outliers(col)
        if out:
            findings.append(Finding("warning", "outliers", name, f"{out} value(s) with robust z-score > {ROBUST_Z}, "
                                    f"the largest {col[worst]:.6g} at line {lines[worst]}"))
        constant = [] if name in table.bad_text else _constant(name, col, roles[name])  # reported as text
        findings += [Finding("warning", f.check, f.column, f.message) if series else f for f in constant]
        drift = {s: _ks_statistic(splits["train"][:, j], splits[s][:, j]) for s in ("val", "test")
                 if len(splits["train"]) and len(splits[s])}
        findings += [Finding("warning", "drift", name, f"train vs {s}: KS statistic {d:.3f} > {DRIFT_KS}; the "
                             f"{s} split comes from another distribution") for s, d in drift.items() if d > DRIFT_KS]
        stats[name] = (out, drift)
    return findings, stats


def _read(cfg: DataConfig, header: list[str] | None = None, body: list | None = None) -> _Table:
    """`cfg.csv`, or `header` and `body` [(line, fields)] already in memory."""
    path = Path(cfg.csv or "data")
    if header is None:
        if not cfg.csv or not path.is_file():
            raise CSVError(f"CSV not found: {cfg.csv or '(data.csv is empty)'}")
        rows = _rows(path)
        header = [h.strip() for h in rows[0]] if rows else []
        body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(v.strip() for v in r)]
    if len(body) < 2:
        raise CSVError(f"{path} has fewer than 2 data rows")
    time_column, names = column_roles(cfg, header, body, path)
    ragged = next((line for line, r in body if len(r) != len(header)), None)
    if ragged is not None:
        raise CSVError(f"{path} line {ragged}: a different number of fields than the header's {len(header)}")
    where = {h: c for c, h in reversed(list(enumerate(header)))}  # the first column of a repeated name
    fields = list(zip(*(row for _, row in body)))  # column-major, transposed in C
    raw = np.full((len(body), len(names)), np.nan)
    bad: dict[str, tuple[int, str, int]] = {}
    lines = [line for line, _ in body]
    for j, name in enumerate(names):
        raw[:, j] = _parse_column(fields[where[name]], name, lines, bad)
    time = [t.strip() for t in fields[where[time_column]]] if time_column else None
    series = [t.strip() for t in fields[where[cfg.series_column]]] if cfg.series_column else None
    return _Table(names, raw, np.array(lines), bad, time, time_column, series)


def _parse_column(texts: tuple[str, ...], name: str, lines: list[int], bad: dict) -> np.ndarray:
    """One column's numbers: all at once when float() takes every field (the common case), else field by field,
    so missing text becomes NaN and the first text that is not a number is remembered."""
    try:
        return np.fromiter(map(float, texts), np.float64, len(texts))
    except ValueError:
        return np.array([_parse(t.strip(), name, line, bad) for t, line in zip(texts, lines)])


def _parse(text: str, name: str, line: int, bad: dict) -> float:
    if text.lower() in MISSING_TEXT:
        return math.nan
    try:
        return float(text)
    except ValueError:
        first, sample, count = bad.get(name, (line, text, 0))
        bad[name] = (first, sample, count + 1)
        return math.nan


def _text_findings(table: _Table) -> list[Finding]:
    return [Finding("error", "not-a-number", name, f"{count} value(s) are not numbers, first {text!r} at line "
                    f"{line}; drop the column (data.drop_columns) or fix the file; a series id goes in "
                    "data.series_column (--series-column)")
            for name, (line, text, count) in table.bad_text.items()]


def _overflow_findings(table: _Table) -> list[Finding]:
    out = []
    for j, name in enumerate(table.names):
        over = np.flatnonzero(np.abs(np.nan_to_num(table.raw[:, j], nan=0.0)) > FLOAT32_MAX)
        if len(over):
            out.append(Finding("error", "float32-overflow", name, f"{len(over)} value(s) beyond float32 "
                               f"(|value| <= 3.4e38), first {table.raw[over[0], j]:.6g} at line "
                               f"{table.lines[over[0]]}: the model, in float32, would compute inf"))
    return out


def _time_findings(table: _Table, cfg: DataConfig) -> list[Finding]:
    if table.time is None:
        return []
    column = table.time_column
    stamps = parse_times(table.time)
    if stamps is None:
        return [Finding("warning", "time", column, "not numbers or ISO dates throughout: order not checked")]
    out = []
    step = np.diff(stamps)
    if (step == 0).any():
        first = int(np.flatnonzero(step == 0)[0]) + 1
        out.append(Finding("warning", "time", column, f"{int((step == 0).sum())} duplicate timestamp(s), "
                           f"first {table.time[first]!r} at line {table.lines[first]}"))
    if (step < 0).any():
        first = int(np.flatnonzero(step < 0)[0]) + 1
        out.append(Finding("error", "time", column, f"{int((step < 0).sum())} step(s) back in time, first "
                           f"{table.time[first]!r} at line {table.lines[first]}: training splits and windows "
                           "assume rows in time order; sort the file"))
    # Only dates measure durations: numbers such as 19580329 (YYYYMMDD) jump at each month's end.
    forward = step[step > 0]
    dates = is_date_column(table.time[:1])
    gaps = np.flatnonzero(step > 1.5 * np.median(forward)) if dates and len(forward) and not (step < 0).any() else []
    if len(gaps):
        out.append(Finding("warning", "time", column, f"{len(gaps)} gap(s) longer than the usual step, first after "
                           f"{table.time[gaps[0]]!r} at line {table.lines[gaps[0]]}: windows read across them as if "
                           "the steps were even"))
    return out


def _model_view(table: _Table, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, list[Finding]]:
    """The values training reads (missing handled, differenced), their CSV lines, and findings on the way."""
    values, lines, out = table.raw.copy(), table.lines, []
    missing = np.isnan(values) & ~_not_numbers(table)
    values[np.abs(np.nan_to_num(values)) > FLOAT32_MAX] = np.nan  # reported already, as float32-overflow
    for j in np.flatnonzero(missing.any(0)):
        name, k = table.names[j], int(missing[:, j].sum())
        where = f"{k} missing value(s), first at line {lines[np.flatnonzero(missing[:, j])[0]]}"
        if cfg.missing == "error":
            out.append(Finding("error", "missing", name, f"{where}; train refuses with data.missing = \"error\": "
                               "set it to \"interpolate\" or \"drop\""))
        else:
            out.append(Finding("warning", "missing", name, f"{where} ({k / len(values):.1%}), "
                               f"handled by data.missing = {cfg.missing!r}"))
    if cfg.missing == "drop":
        keep = ~np.isnan(values).any(1)
        values, lines = values[keep], lines[keep]
    else:
        values = interpolate_missing(values)
    if cfg.difference and len(values) > 1:
        values, lines = np.diff(values, axis=0), lines[1:]
    return values, lines, out


def _not_numbers(table: _Table) -> np.ndarray:
    mask = np.zeros(table.raw.shape, bool)
    for j, name in enumerate(table.names):
        if name in table.bad_text:
            mask[:, j] = np.isnan(table.raw[:, j])
    return mask


def _split(values: np.ndarray, cfg: DataConfig) -> dict[str, np.ndarray]:
    n_train, n_val, _ = split_sizes(len(values), cfg)
    return dict(zip(SPLITS, (values[:n_train], values[n_train:n_train + n_val], values[n_train + n_val:])))


def _moments(x: np.ndarray) -> tuple[float, float, float, float]:
    if not len(x):
        return (math.nan,) * 4
    return float(x.min()), float(x.max()), float(x.mean()), float(x.std())


def _outliers(x: np.ndarray) -> tuple[int, int]:
    """How many values have a robust z-score over ROBUST_Z, and the index of the worst."""
    finite = np.isfinite(x)
    if finite.sum() < 3:
        return 0, 0
    median = np.median(x[finite])
    mad = np.median(np.abs(x[finite] - median))
    if mad == 0:  # over half the values equal: the MAD says nothing; the constant check speaks instead
        return 0, 0
    z = np.where(finite, 0.6745 * np.abs(x - median) / mad, 0.0)
    return int((z > ROBUST_Z).sum()), int(np.argmax(z))


def _constant(name: str, x: np.ndarray, role: str) -> list[Finding]:
    finite = x[np.isfinite(x)]
    if len(finite) and np.ptp(finite) > 0:
        return []
    if "target" in role:
        return [Finding("error", "constant", name, "the target never changes: there is nothing to learn")]
    return [Finding("warning", "constant", name, "the column never changes: it carries no information")]


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
    if not len(a) or not len(b):
        return math.nan
    pooled = np.concatenate([a, b])
    gap = np.searchsorted(a, pooled, side="right") / len(a) - np.searchsorted(b, pooled, side="right") / len(b)
    return float(np.abs(gap).max())


def _leakage(values: np.ndarray, names: list[str], inputs: list[str], targets: list[str],
             cfg: DataConfig) -> list[Finding]:
    """Features that copy a target shifted forward in time (correlation > LEAK_CORR; an exact or rounded copy
    has r = 1): the future seen as an input. Every feature x target pair at once, one matrix product per shift
    (and block of targets); bounded by LEAK_BUDGET as `_leak_plan` says."""
    col = {n: j for j, n in enumerate(names)}
    f_idx, t_idx = np.array([col[f] for f in inputs]), np.array([col[t] for t in targets])
    plan = _leak_plan(len(values), len(f_idx), len(t_idx), cfg.window + cfg.horizon)
    x, y = _scaled_columns(values[:, f_idx]), _scaled_columns(values[:, t_idx])
    first: dict[tuple[int, int], int] = {}  # (feature, target) column -> the smallest shift that leaks
    block = max(1, LEAK_BLOCK // max(1, len(f_idx)))
    sums = _prefix_sums(x, y) if plan.step == 1 else None
    for s in plan.shifts:
        a, b = x[:len(x) - s:plan.step], y[s::plan.step]  # row t paired with row t + s
        m = len(a)
        if sums is not None:  # every row: the sums of a and b are differences of running sums, no pass over them
            (cx, cxx), (cy, cyy) = sums
            sum_a, sq_a, sum_b, sq_b = cx[m], cxx[m], cy[-1] - cy[s], cyy[-1] - cyy[s]
        else:
            sum_a, sq_a = a.sum(0), np.einsum("ij,ij->j", a, a)
            sum_b, sq_b = b.sum(0), np.einsum("ij,ij->j", b, b)
        var_a = sq_a - sum_a * sum_a / m  # times m, like the covariances below
        var_b = sq_b - sum_b * sum_b / m
        # Columns are scaled to max |v| = 1: a variance this small is a constant stretch, not a signal.
        ok_a, ok_b = var_a > 1e-12 * m, var_b > 1e-12 * m
        for lo in range(0, len(t_idx), block):
            hi = lo + block
            cov = a.T @ b[:, lo:hi] - np.outer(sum_a, sum_b[lo:hi] / m)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = cov / np.sqrt(np.outer(var_a, var_b[lo:hi]))
            r[~(ok_a[:, None] & ok_b[None, lo:hi])] = 0.0
            for i, j in np.argwhere(r > LEAK_CORR):
                pair = (int(f_idx[i]), int(t_idx[lo + j]))
                if pair[0] != pair[1]:  # the target's own past is a legitimate input
                    first.setdefault(pair, s)
    out = [Finding("warning", "leakage", names[f], f"equals target {names[t]!r} shifted {s} step(s) forward in "
                   "time: at prediction time the model would read the future")
           for (f, t), s in sorted(first.items())[:MAX_LEAK_FINDINGS]]
    if len(first) > MAX_LEAK_FINDINGS:
        out.append(Finding("warning", "leakage", "(more)", f"{len(first) - MAX_LEAK_FINDINGS} more feature/target "
                           "pair(s) leak; list --features/--targets to see them"))
    if plan.note:
        out.append(Finding("warning", "leakage", "(scan)", plan.note))
    return out


@dataclass
class _LeakPlan:
    shifts: list[int]
    step: int  # every step-th row is paired
    note: str  # how the scan was bounded, or ''


def _leak_plan(n: int, features: int, targets: int, horizon: int) -> _LeakPlan:
    """Shifts 1..min(window + horizon, n // 4), each over every row, unless that costs more than LEAK_BUDGET
    multiply-adds: then over every k-th row (at least MIN_LEAK_ROWS rows), and if still too much, fewer shifts."""
    shifts = [s for s in range(1, min(horizon, n // 4) + 1) if n - s >= MIN_LEAK_ROWS]
    if not shifts:
        note = f"not scanned: it needs {MIN_LEAK_ROWS} rows past the shift, the data has {n}"
        return _LeakPlan([], 1, note if features * targets > 1 else "")
    pairs, note = max(1, features * targets), ""
    if pairs * len(shifts) * MIN_LEAK_ROWS > LEAK_BUDGET:
        kept = max(1, LEAK_BUDGET // (pairs * MIN_LEAK_ROWS))
        if kept < len(shifts):
            note = f"shifts 1..{kept} of 1..{shifts[-1]}"
            shifts = shifts[:kept]
    rows = max(MIN_LEAK_ROWS, LEAK_BUDGET // (pairs * len(shifts)))
    step = max(1, -(-(n - 1) // rows))  # ceil: at most `rows` rows per shift
    if step > 1 and rows < LEAK_QUIET_ROWS:
        note = ", ".join(filter(None, [note, f"one row in {step}"]))
    if note:
        note = f"{features} x {targets} column pairs: scanned {note}; list --features/--targets to scan all"
    return _LeakPlan(shifts, step, note)


def _prefix_sums(*arrays: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each [n, k] array: running sums of its columns and of their squares, each [n + 1, k] from a 0 row."""
    out = []
    for v in arrays:
        zero = np.zeros((1, v.shape[1]))
        out.append((np.concatenate([zero, np.cumsum(v, 0)]), np.concatenate([zero, np.cumsum(v * v, 0)])))
    return out


def _scaled_columns(x: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to max |v| = 1 (so sums of squares cannot overflow, and stay well
    conditioned); a column that is constant or not finite throughout becomes 0: it never leaks."""
    with np.errstate(invalid="ignore", over="ignore"):
        x = x - x.mean(0)
        scale = np.abs(x).max(0) if len(x) else np.zeros(x.shape[1])
    ok = np.isfinite(scale) & (scale > 0)
    return np.ascontiguousarray(np.where(ok, x / np.where(ok, scale, 1.0), 0.0))


def plot_splits(report: QualityReport, path: Path) -> Path:
    """One panel per column: its distribution in train, val and test (step histograms on shared bins)."""
    from lstm_onnx.core.figures import pyplot, save_figure

    plt = pyplot()
    n = len(report.columns)
    fig, axes = plt.subplots(n, 1, figsize=(6, 2.2 * n), squeeze=False)
    for j, (col, ax) in enumerate(zip(report.columns, axes[:, 0])):
        data = [report.splits[s][:, j] for s in SPLITS]
        finite = np.concatenate([d[np.isfinite(d)] for d in data])
        bins = np.histogram_bin_edges(finite, bins=40) if len(finite) else 10
        for name, d in zip(SPLITS, data):
            ax.hist(d[np.isfinite(d)], bins=bins, density=True, histtype="step", label=name)
        ax.set_title(f"{col.name} (KS val {_ks(col.drift.get('val'))}, test {_ks(col.drift.get('test'))})",
                     fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
