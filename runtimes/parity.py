"""Run a set of runners on the same feeds and compare each with a reference runner."""
from __future__ import annotations

from lstm_onnx.runtimes.base import Runner, RunnerUnavailable, error_message
from lstm_onnx.runtimes.compare import ParityReport, Tolerances, compare_outputs


def run_parity(reference: Runner, runners: list[Runner], feeds: dict, tolerances: Tolerances | None = None,
               outputs: list[str] | None = None, skipped: dict[str, str] | None = None) -> ParityReport:
    """Compare `outputs` (default: everything the reference returns) of each runner with the reference.
    Every runner gets `feeds` by the model's input names; one that cannot run is an error (or skipped if
    unavailable) in the report, never an exception."""
    tolerances = tolerances or Tolerances()
    report = ParityReport(reference.name, skipped=dict(skipped or {}),
                          inputs={k: list(v.shape) for k, v in feeds.items()})
    with reference:
        expected = reference.infer(feeds)
    names = outputs or list(expected)
    for runner in runners:
        try:
            with runner:
                actual = runner.infer(feeds)
        except RunnerUnavailable as exc:
            report.skipped[runner.name] = str(exc)
            continue
        except Exception as exc:  # any runtime's own error type
            report.errors[runner.name] = error_message(exc)
            continue
        report.rows += compare_outputs(runner.name, actual, expected, tolerances, names)
    return report
