"""`lstm-pipeline check-data` and the check at the start of `train`: table, JSON, PNG, exit codes, refusals."""
import json

from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests.pipeline.test_quality import clean_columns, write_csv


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_clean_csv_prints_the_table_and_exits_0(tmp_path):
    csv = write_csv(tmp_path / "d.csv", clean_columns())
    result = run("check-data", csv, "--drop", "date", "--time-column", "date", "--targets", "y")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output and "KS test" in result.output


def test_json_lists_findings_and_errors_exit_1(tmp_path):
    csv = write_csv(tmp_path / "d.csv", clean_columns(), {("a", 4): "1e39"})
    result = run("check-data", csv, "--drop", "date", "--json")
    assert result.exit_code == 1
    rep = json.loads(result.output)
    assert rep["errors"] == 1 and rep["findings"][0]["check"] == "float32-overflow"


def test_strict_fails_on_warnings(tmp_path):
    cols = clean_columns()
    cols["a"][9] = 40.0
    csv = write_csv(tmp_path / "d.csv", cols)
    assert run("check-data", csv, "--drop", "date").exit_code == 0
    assert run("check-data", csv, "--drop", "date", "--strict").exit_code == 1


def test_plot_writes_a_png(tmp_path):
    csv = write_csv(tmp_path / "d.csv", clean_columns())
    png = tmp_path / "splits.png"
    result = run("check-data", csv, "--drop", "date", "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_of_co2_is_read_from_its_toml():
    result = run("check-data", "configs/co2.toml")
    assert result.exit_code == 0 and "0 error(s)" in result.output


def test_bad_inputs_get_one_line(tmp_path):
    for args in (["check-data", tmp_path / "none.csv"], ["check-data", tmp_path / "none.toml"],
                 ["check-data", write_csv(tmp_path / "d.csv", clean_columns()), "--targets", "zz"]):
        result = run(*args)
        assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1, \
            result.output


def test_generated_task_has_nothing_to_check():
    result = run("check-data", "configs/adding.toml")
    assert result.exit_code == 0 and "nothing to check" in result.output


def test_train_refuses_time_going_back_and_writes_nothing(tmp_path):
    cols = clean_columns()
    cols["date"][50], cols["date"][51] = cols["date"][51], cols["date"][50]
    csv = write_csv(tmp_path / "d.csv", cols)
    (tmp_path / "c.toml").write_text(f'[data]\ntask = "csv"\ncsv = "{csv}"\ndrop_columns = ["date"]\n'
                                     'time_column = "date"\ntargets = ["y"]\nwindow = 10\n'
                                     '[model]\ninput_size = 3\noutput_size = 1\n')
    out = tmp_path / "m.pt"
    result = run("train", "--config", tmp_path / "c.toml", "-o", out, "--epochs", 1)
    assert result.exit_code == 1 and "back in time" in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_train_prints_warnings_then_trains(tmp_path):
    cols = clean_columns()
    cols["b"] = cols["b"] * 0 + 2.0
    csv = write_csv(tmp_path / "d.csv", cols)
    (tmp_path / "c.toml").write_text(f'[data]\ntask = "csv"\ncsv = "{csv}"\ndrop_columns = ["date"]\n'
                                     'targets = ["y"]\nwindow = 10\n[model]\ninput_size = 3\nhidden_size = 4\n'
                                     'output_size = 1\n[train]\nthreads = 1\n')
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(cli, ["-q", "train", "--config", str(tmp_path / "c.toml"), "-o", str(out),
                                      "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "warning: data b: the column never changes" in result.output and out.exists()
