"""A new user's run: a CSV of two series with a timestamp, an id and two features; one `train --csv` with no
config, then export, verify and `predict` on new rows in the same layout, with no edit to the file."""
import csv
import io
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.pipeline.checkpoint import load_checkpoint
from lstm_onnx.runtimes.embed import Predictor

WINDOW = 8
START = datetime(2024, 1, 1)


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def user_csv(path, hours: int = 150, first: int = 0):
    """Hourly load and temperature of two sites, rows interleaved (the order such exports have)."""
    rng = np.random.default_rng(7)
    rows = [["timestamp", "site", "load", "temp"]]
    for h in range(first, first + hours):
        for site, base in (("north", 50.0), ("south", 80.0)):
            temp = 10 + 8 * np.sin(2 * np.pi * h / 24) + rng.normal(0, 0.3)
            rows.append([(START + timedelta(hours=h)).isoformat(), site, f"{base + 0.8 * temp:.3f}", f"{temp:.3f}"])
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train_csv")
    data = user_csv(d / "data.csv")
    r = run("-q", "train", "--csv", data, "--target", "load", "--series-column", "site", "--window", WINDOW,
            "--epochs", 2, "-o", d / "run" / "model.pt")
    assert r.exit_code == 0, r.output
    return d, r.output


def test_one_command_trains_and_prints_its_result_line_under_q(trained):
    d, output = trained
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("best val loss") and "model.toml" in lines[0]
    ckpt = load_checkpoint(d / "run" / "model.pt")
    assert ckpt.feature_names == ["load", "temp"] and ckpt.target_names == ["load"]
    assert (ckpt.model_config.input_size, ckpt.model_config.output_size) == (2, 1)
    assert ckpt.columns == {"time": "timestamp", "series": "site", "features": ["load", "temp"], "targets": ["load"]}
    assert set(ckpt.metrics["test"]["per_series"]) == {"north", "south"}


def test_the_written_config_repeats_the_run(trained, tmp_path):
    d, _ = trained
    r = run("-q", "train", "--config", d / "run" / "model.toml", "-o", tmp_path / "again.pt")
    assert r.exit_code == 0, r.output
    first, again = load_checkpoint(d / "run" / "model.pt"), load_checkpoint(tmp_path / "again.pt")
    assert first.config == again.config
    for key, value in first.state_dict.items():
        assert torch.equal(value, again.state_dict[key]), key


def test_export_verify_and_predict_on_new_rows_in_the_same_layout(trained, tmp_path):
    d, _ = trained
    onnx_path = tmp_path / "model.onnx"
    assert run("export", d / "run" / "model.pt", "-o", onnx_path).exit_code == 0
    r = run("verify", d / "run" / "model.pt", onnx_path, "--runner", "onnxruntime-cpu")
    assert r.exit_code == 0, r.output
    new = user_csv(tmp_path / "new.csv", hours=WINDOW + 4, first=150)  # the next 12 hours, same columns
    r = run("predict", onnx_path, new)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["site", "timestamp", "load"]
    assert [row["site"] for row in rows] == ["north", "south"]
    # the hour after the last row of each site
    assert {row["timestamp"] for row in rows} == {(START + timedelta(hours=162)).isoformat()}
    # independent: the last WINDOW rows of each site, read by hand, through the Predictor
    table = list(csv.DictReader(open(new)))
    pred = Predictor.load(str(onnx_path), warn=False)
    for row in rows:
        mine = [t for t in table if t["site"] == row["site"]][-WINDOW:]
        x = np.array([[[float(t["load"]), float(t["temp"])] for t in mine]], np.float32)
        np.testing.assert_allclose(float(row["load"]), pred.predict(x)[0, 0], rtol=1e-6)
    rolling = list(csv.DictReader(io.StringIO(run("predict", onnx_path, new, "--rolling").stdout)))
    assert len(rolling) == 2 * 5  # 12 rows per site, windows of 8: 5 each
    assert rolling[0]["timestamp"] == (START + timedelta(hours=158)).isoformat()  # read from the table


@pytest.mark.parametrize("args, words", [
    (["--target", "load"], "--target goes with --csv"),
    (["--csv", "x.csv", "--config", "c.toml"], "leave out --config"),
    (["--csv", "missing.csv", "--target", "load"], "CSV not found: missing.csv"),
])
def test_option_mistakes_are_one_line(args, words, tmp_path):
    r = run("train", *args, "-o", tmp_path / "m.pt")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_a_column_the_table_lacks_is_named(trained, tmp_path):
    d, _ = trained
    r = run("train", "--csv", d / "data.csv", "--target", "power", "-o", tmp_path / "m.pt")
    assert r.exit_code != 0 and "no column 'power'" in r.output and len(r.output.strip().splitlines()) == 1


def test_predict_table_mistakes_are_one_line_naming_the_file(trained, tmp_path):
    d, _ = trained
    onnx_path = tmp_path / "model.onnx"
    assert run("export", d / "run" / "model.pt", "-o", onnx_path).exit_code == 0
    short = user_csv(tmp_path / "short.csv", hours=3)
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("\n".join(line.rsplit(",", 1)[0] for line in short.read_text().splitlines()) + "\n")
    cases = [((short,), f"{short}: series 'north' has 3 row(s); the model reads windows of {WINDOW}"),
             ((lacking,), f"{lacking}: no column(s) 'temp'"),
             ((short, "--drop", "temp"), f"{short}: no column(s) 'temp'"),
             ((short, "--drop", "nope"), "--drop names 'nope', which is not a column"),
             ((short, "-o", tmp_path / "y.npy"), "written as CSV")]
    for args, words in cases:
        r = run("predict", onnx_path, *args)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert words in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)


def test_check_data_reports_per_series_and_takes_the_timestamp_as_time(trained):
    d, _ = trained
    r = run("check-data", d / "data.csv", "--series-column", "site", "--targets", "load")
    assert r.exit_code == 0, r.output
    assert "timestamp" not in r.output.split("\n\n")[0]  # not a column of the table (no 'missing 300')
    assert r.output.strip().endswith("0 error(s), 0 warning(s)")
    r = run("check-data", d / "data.csv", "--targets", "load")  # the id column, not named as the series
    assert r.exit_code == 1 and "--series-column" in r.output
