"""The CLI end to end through click's CliRunner: the happy path, and one clear line for each user error."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli

COMMANDS = ["train", "export", "verify", "predict", "inspect", "convert"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the module: train -> export through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    cfg = d / "tiny.toml"
    cfg.write_text("[model]\nhidden_size = 6\ninput_size = 3\noutput_size = 3\n"
                   "[data]\nnum_features = 3\nwindow = 8\nlength = 300\n[train]\nepochs = 1\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "train", "--config", str(cfg), "-o", str(d / "m.pt")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["export", str(d / "m.pt"), "-o", str(d / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "1 LSTM" in res.output
    return d


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_verify_prints_a_passing_table_and_json(trained):
    runner = CliRunner()
    res = runner.invoke(cli, ["verify", str(trained / "m.pt"), str(trained / "m.onnx")])
    assert res.exit_code == 0, res.output
    for name in ("numpy", "onnxruntime-cpu", "onnx-reference", "PASSED"):
        assert name in res.output
    res = runner.invoke(cli, ["verify", str(trained / "m.pt"), str(trained / "m.onnx"), "--json"])
    report = json.loads(res.output)
    assert report["passed"]
    rows = {r["runner"]: r for r in report["rows"]}
    assert all(rows[n]["passed"] for n in ("numpy", "onnxruntime-cpu", "onnx-reference"))
    if "openvino-cpu" in rows:  # installed: it drops P, and the report says so without failing the run
        assert not rows["openvino-cpu"]["passed"] and "LSTM with P" in rows["openvino-cpu"]["known_wrong"]


def test_verify_exits_nonzero_on_failure(trained):
    res = CliRunner().invoke(cli, ["verify", str(trained / "m.pt"), str(trained / "m.onnx"), "--atol", "0",
                                   "--rtol", "0"])
    assert res.exit_code == 1 and "FAILED" in res.output


def test_predict_npy_and_csv(trained, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 8, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    res = CliRunner().invoke(cli, ["predict", str(trained / "m.onnx"), str(tmp_path / "x.npy"), "-o",
                                   str(tmp_path / "y.npy")])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "y.npy").shape == (2, 3)
    np.savetxt(tmp_path / "x.csv", x[0], delimiter=",")
    res = CliRunner().invoke(cli, ["predict", str(trained / "m.onnx"), str(tmp_path / "x.csv")])
    assert res.exit_code == 0
    header, row = res.output.splitlines()
    assert header.split(",")[0] == "sequence" and len(header.split(",")) == 4, header
    np.testing.assert_allclose(np.array(row.split(",")[1:], float), np.load(tmp_path / "y.npy")[0], rtol=1e-5)


def test_inspect_shows_p(trained):
    res = CliRunner().invoke(cli, ["inspect", str(trained / "m.onnx")])
    assert res.exit_code == 0 and "P present" in res.output and "form: native" in res.output


def _bad_inputs(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 8, 5), np.float32))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 8, 3), np.nan, np.float32))
    text = tmp_path / "text.csv"
    text.write_text("a,b,c\n")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a model")
    return wrong, nan, text, garbage


def test_user_errors_are_one_line(trained, tmp_path):
    wrong, nan, text, garbage = _bad_inputs(tmp_path)
    m, ckpt = str(trained / "m.onnx"), str(trained / "m.pt")
    cases = {
        ("export", str(tmp_path / "missing.pt")): "checkpoint not found",
        ("export", str(garbage)): "not a readable checkpoint",
        ("verify", ckpt, str(garbage)): "not a readable ONNX model",
        ("inspect", ckpt): "not a readable ONNX model",
        ("predict", m, str(wrong)): "expected [batch, seq, 3]",
        ("predict", m, str(nan)): "NaN",
        ("predict", m, str(text)): "cannot read",
        ("predict", m, str(tmp_path / "none.npy")): "input not found",
        ("train", "--config", str(tmp_path / "none.toml")): "config not found",
    }
    for args, message in cases.items():
        res = CliRunner().invoke(cli, list(args))
        assert res.exit_code != 0, args
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output


def every_command(command, path=("lstm-pipeline",)):
    """(path, command) for the group and every command under it, recursively."""
    import click

    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from every_command(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    import click

    bare = [f"{' '.join(path)} {'/'.join(p.opts)}" for path, command in every_command(cli)
            for p in command.params if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert bare == [], f"options without help: {bare}"
    assert len(list(every_command(cli))) >= 12  # the walk reached the subcommands (deploy triton too)


@pytest.mark.parametrize("args, shows", [
    (["serve", "-h"], "[uvicorn|ray]"), (["serve", "-h"], "[cpu|cuda|tensorrt"),
    (["predict", "-h"], "[cpu|cuda|tensorrt"), (["bench", "-h"], "[native|decomposed|unrolled]")])
def test_fixed_choices_are_listed(args, shows):
    out = CliRunner().invoke(cli, args, terminal_width=400).output
    assert shows in out


def test_no_help_says_both_a_default_and_an_empty_one():
    out = CliRunner().invoke(cli, ["serve", "-h"], terminal_width=400).output
    model_name = next(line for line in out.splitlines() if "--model-name" in line)
    assert "file stem" in model_name and '[default: ""]' not in model_name and "default: )" not in model_name


def test_free_text_is_refused_where_choices_are_fixed():
    r = CliRunner().invoke(cli, ["serve", "x.onnx", "--engine", "gunicorn"])
    assert r.exit_code == 2 and "'gunicorn' is not one of 'uvicorn', 'ray'" in r.output
