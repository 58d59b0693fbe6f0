"""`lstm-pipeline train` on every shipped config, then export + verify; clear one-line errors; report."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def run(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def test_every_task_has_a_config():
    from lstm_onnx.pipeline.config import TASKS, load_run_config

    assert {load_run_config(c).data.task for c in CONFIGS} == set(TASKS)
    assert {load_run_config(c).model.head for c in CONFIGS} == {"last", "sequence", "classify"}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_exports_and_verifies(config, tmp_path):
    ckpt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    result = run("train", "--config", config, "-o", ckpt, "--epochs", 1, "--threads", 1)
    assert result.exit_code == 0, result.output
    result = run("export", ckpt, "-o", onnx)
    assert result.exit_code == 0, result.output
    result = run("verify", ckpt, onnx, "--runner", "onnxruntime-cpu")
    assert result.exit_code == 0, result.output


def test_seed_config_is_the_default():
    from lstm_onnx.pipeline.config import RunConfig, load_run_config

    assert load_run_config(ROOT / "configs" / "seed.toml") == RunConfig()


def test_messy_csv_is_one_clear_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("t,v\n" + "\n".join(f"{i},{'' if i == 3 else i}" for i in range(50)) + "\n")
    config = tmp_path / "c.toml"
    config.write_text('[data]\ntask = "csv"\ncsv = "d.csv"\nwindow = 5\n[model]\ninput_size = 2\noutput_size = 2\n')
    result = run("train", "--config", config, "-o", tmp_path / "m.pt")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "missing value(s), first at line 5, column 'v'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_config_and_resume_errors(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[train]\nschedule = "linear"\n')
    result = run("train", "--config", config)
    assert result.exit_code != 0 and "schedule must be one of" in result.output
    result = run("train", "--resume", "-o", tmp_path / "none.pt")
    assert result.exit_code != 0 and "no training state" in result.output


@pytest.mark.slow
def test_resume_and_report(tmp_path):
    ckpt = tmp_path / "m.pt"
    config = ROOT / "configs" / "spike_delay.toml"
    assert run("train", "--config", config, "-o", ckpt, "--epochs", 1).exit_code == 0
    result = CliRunner().invoke(cli, ["train", "--resume", "-o", str(ckpt), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "resumed at epoch 1" in result.output and "epoch   2" in result.output
    result = run("report", ckpt, "-o", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    for name in ("loss.png", "test.png", "report.md", "metrics.json"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert (tmp_path / "rep" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
