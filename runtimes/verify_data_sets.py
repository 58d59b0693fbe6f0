"""`verify --test-data DIR`: verify on every data set of ONNX test data (runtimes/onnx_test_data.py), each
set's inputs as the feeds and its outputs as the baseline, merged into one report.

`python -m lstm_onnx.runtimes.verify_data_sets [DEST]` runs verify on each of ONNX's own test_lstm_* node
tests and prints the table of outcomes (docs/runtimes.md).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lstm_onnx.runtimes.compare import ParityReport
from lstm_onnx.runtimes.onnx_graph import load_model
from lstm_onnx.runtimes.onnx_test_data import MODEL_FILE, DataSet, is_proto, locate, onnx_lstm_tests, read_data_sets
from lstm_onnx.runtimes.verify import VerifyOptions, VerifyReport, check_expected, check_feeds, verify_model

TEST_DATA = "test data"  # the baseline's name in the report: "test data FOLDER"


def read_checked(folder, model=None) -> list[DataSet]:
    """read_data_sets, with each set's dtypes and shapes checked against the model as verify's --inputs and
    --expected are (ValueError, one line, naming the set's folder)."""
    path, _ = locate(folder, model)
    proto = model if is_proto(model) else load_model(path)
    sets = read_data_sets(folder, proto)
    for data in sets:
        check_expected(proto, data.outputs, check_feeds(proto, data.inputs, data.path), data.path)
    return sets


def verify_test_data(model_path, ckpt, options: VerifyOptions, folder) -> VerifyReport:
    """verify_model on each data set in `folder`, merged: outputs are named `test_data_set_N/OUTPUT`."""
    folder = Path(folder)
    sets = read_checked(folder, model_path)
    label = folder.name if sets[0].path != folder else f"{folder.parent.name}/{folder.name}"
    reports = []
    for data in sets:
        one = dataclasses.replace(options, inputs=data.inputs, expected=data.outputs, save_inputs=None,
                                  save_outputs=None, save_test_data=None)
        reports.append((data.path.name, verify_model(model_path, ckpt, one)))
    return merge_reports(reports, f"{TEST_DATA} {label}", options.strict_placement)


def merge_reports(reports: list[tuple[str, VerifyReport]], reference: str, strict: bool) -> VerifyReport:
    """One report for several data sets: rows and inputs named `SET/NAME`; a runner's skip, error, placement
    or localisation as in the first set that has one."""
    merged = VerifyReport(ParityReport(reference), strict_placement=strict)
    p = merged.parity
    for name, report in reports:
        p.rows += [dataclasses.replace(row, output=f"{name}/{row.output}") for row in report.parity.rows]
        p.inputs.update({f"{name}/{k}": v for k, v in report.parity.inputs.items()})
        for mine, theirs in ((p.skipped, report.parity.skipped), (p.errors, report.parity.errors),
                             (merged.uncounted_errors, report.uncounted_errors),
                             (merged.placements, report.placements), (merged.localisation, report.localisation)):
            for key, value in theirs.items():
                mine.setdefault(key, value)
        p.warnings += [w for w in report.parity.warnings if w not in p.warnings]
        merged.placement_problems += [x for x in report.placement_problems if x not in merged.placement_problems]
    return merged


def outcomes(report: VerifyReport, width: int = 110) -> dict[str, str]:
    """runner -> one table cell: PASS/FAIL with the largest difference, or why it was not compared (cut to
    `width`)."""
    cells: dict[str, tuple[bool, float]] = {}
    for row in report.parity.rows:
        ok, worst = cells.get(row.runner, (True, 0.0))
        cells[row.runner] = (ok and row.passed and not row.known_wrong, max(worst, row.max_abs))
    out = {n: f"{'PASS' if ok else 'FAIL'} (max abs {worst:.2g})" for n, (ok, worst) in cells.items()}
    out.update({n: f"skipped: {why}" for n, why in report.parity.skipped.items()})
    out.update({n: f"ERROR: {why}" for n, why in report.parity.errors.items()})
    return {n: cell if len(cell) <= width else cell[:width - 1] + "…" for n, cell in out.items()}


def lstm_table(dest, runners=("onnxruntime-cpu", "onnx-reference")) -> str:
    """verify on each of ONNX's test_lstm_* folders, as a Markdown table (folder x runner)."""
    import onnx

    from lstm_onnx.runtimes.capabilities import FEATURES, model_features

    lines = ["| ONNX test | needs | " + " | ".join(runners) + " |", "|---|---|" + "---|" * len(runners)]
    for folder in onnx_lstm_tests(dest):
        model = folder / MODEL_FILE
        report = verify_test_data(model, None, VerifyOptions(runners=tuple(runners)), folder)
        cells = outcomes(report)
        needs = ", ".join(FEATURES[f] for f in model_features(onnx.load(str(model)))) or "-"
        lines.append(f"| `{folder.name}` | {needs} | " + " | ".join(cells.get(r, "-") for r in runners) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m lstm_onnx.runtimes.verify_data_sets [DEST]
    import sys
    import tempfile

    if len(sys.argv) > 1:
        print(lstm_table(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as where:
            print(lstm_table(where))
