"""`lstm-pipeline capabilities`: the stored table with its versions; `--measure`: this machine's, its
differences, exit 1 when a cell differs."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from lstm_onnx.bench import measure_capabilities as mc
from lstm_onnx.cli.main import cli
from lstm_onnx.runtimes import capabilities as cap


def run(*args):
    return CliRunner().invoke(cli, ["capabilities", *args])


def test_the_stored_table_names_what_each_row_was_measured_on():
    result = run()
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert set(lines) == set(cap.RUNTIMES)
    for key, rt in cap.RUNTIMES.items():
        assert lines[key].endswith(cap.measured_on(rt)) and lines[key].split("  ")[0] == key
        assert lines[key][len(key):].strip().startswith(rt.peepholes)
    assert "(int8 on " in lines["onnxruntime-cpu"]
    assert json.loads(run("--json").output)["opencv"]["measured_on"] == cap.RUNTIMES["opencv"].measured_on


@pytest.fixture
def ort_only(monkeypatch):
    real = mc.measure
    monkeypatch.setattr(mc, "measure", lambda: real(["onnxruntime-cpu"], ["peepholes", "sequence_lens"]))


def test_measure_agrees_with_the_table_and_exits_0(ort_only):
    result = run("--measure")
    assert result.exit_code == 0, result.output
    assert "onnxruntime-cpu" in result.output and result.output.strip().endswith("0 difference(s) from the stored table")


def test_a_stored_cell_the_measurement_contradicts_is_listed_and_exits_1(ort_only, monkeypatch):
    row = dataclasses.replace(cap.RUNTIMES["onnxruntime-cpu"], sequence_lens=cap.WRONG)
    monkeypatch.setattr(cap, "RUNTIMES", dict(cap.RUNTIMES, **{"onnxruntime-cpu": row}))
    result = run("--measure")
    assert result.exit_code == 1
    assert "onnxruntime-cpu: LSTM sequence_lens: stored wrong, measured yes (" in result.output
    assert "1 difference(s) from the stored table" in result.output
    data = json.loads(run("--measure", "--json").output)
    assert data["differences"] == [dict(key="onnxruntime-cpu", feature="sequence_lens", stored="wrong",
                                        measured="yes", detail=data["differences"][0]["detail"])]


@pytest.mark.slow
def test_measure_on_this_machine_finds_no_difference():
    result = CliRunner().invoke(cli, ["capabilities", "--measure"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0 difference(s) from the stored table")
