"""`lstm-pipeline verify`: Polygraphy .json files, --check-error-stat and --fail-fast reach verify."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.runtimes.polygraphy_io import read_inputs_json, read_outputs_json, write_outputs_json


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lstm_onnx.bench.models import export_form, random_checkpoint

    return export_form(random_checkpoint(4, 8), "native", tmp_path_factory.mktemp("pg-cli") / "model.onnx")


def run(*args):
    return CliRunner().invoke(cli, ["verify", *map(str, args)])


@pytest.fixture
def saved(model, tmp_path):
    """Feeds and ORT CPU's outputs as Polygraphy .json, and a copy of the outputs with one element off by 0.5."""
    result = run(model, "--runner", "onnx-reference", "--batch", "5", "--seq", "40",
                 "--save-inputs", tmp_path / "in.json", "--save-outputs", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    (outputs,) = read_outputs_json(tmp_path / "out.json")["onnxruntime-cpu"]
    y = outputs["y"].copy()
    y.flat[3] += np.float32(0.5)
    write_outputs_json(tmp_path / "off.json", "onnxruntime-cpu", {"y": y})
    return tmp_path


def test_saves_polygraphy_json_and_reads_it_back(model, saved):
    assert read_inputs_json(saved / "in.json")["x"].shape == (5, 40, 4)
    result = run(model, "--inputs", saved / "in.json", "--expected", saved / "out.json", "--runner",
                 "onnx-reference", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row["error_stat"] == "elemwise" and row["p99_abs"] <= row["max_abs"] < 1e-5


def test_check_error_stat_lets_one_outlier_through_the_mean(model, saved):
    common = [model, "--inputs", saved / "in.json", "--expected", saved / "off.json", "--runner", "onnx-reference",
              "--atol", "0.1", "--rtol", "0"]
    assert run(*common).exit_code == 1  # elementwise: 0.5 > 0.1
    assert run(*common, "--check-error-stat", "max").exit_code == 1
    mean = run(*common, "--check-error-stat", "mean")  # 20 values: mean |diff| 0.025
    assert mean.exit_code == 0, mean.output
    assert "0.1/0 on mean" in mean.output


def test_fail_fast_skips_the_rest(model, saved):
    result = run(model, "--inputs", saved / "in.json", "--expected", saved / "off.json", "--runner",
                 "onnx-reference", "--runner", "onnxruntime-cpu", "--fail-fast", "--json")
    data = json.loads(result.output)
    assert result.exit_code == 1
    assert [r["runner"] for r in data["rows"]] == ["onnx-reference"]
    assert data["skipped"] == {"onnxruntime-cpu": "not run: --fail-fast"}


def test_a_bad_json_is_one_line(model, tmp_path):
    (tmp_path / "in.json").write_text("[1, 2]")
    result = run(model, "--inputs", tmp_path / "in.json")
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "is not Polygraphy inputs" in result.output and result.output.count("\n") == 1
