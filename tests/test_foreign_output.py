"""A model trained on raw-scale data (every feature's std above 1, as most real-world data has) through the
documented commands, with every Python warning an error: train, export (also --stateful --lengths and
int8), inspect, verify, predict, the Predictor, and serve's start-up print nothing foreign on stderr."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.foreign_output import foreign_lines, quiet_environment

BIN = Path(sys.executable).parent
STEPS = 400


def cli(work: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "lstm-pipeline"), *args], cwd=work, env=quiet_environment(dict(os.environ)),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"lstm-pipeline {' '.join(args)} (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    """A CSV task whose two features swing by 40 and 7 around 1000 and 20 (train: one epoch)."""
    work = tmp_path_factory.mktemp("wide-std")
    t = np.arange(STEPS)
    rng = np.random.default_rng(0)
    pressure = 1000 + 40 * np.sin(t / 9) + rng.normal(0, 3, STEPS)
    temperature = 20 + 7 * np.cos(t / 13) + rng.normal(0, 1, STEPS)
    rows = "\n".join(f"{p:.3f},{q:.3f}" for p, q in zip(pressure, temperature))
    (work / "weather.csv").write_text("pressure,temperature\n" + rows + "\n")
    (work / "weather.toml").write_text(textwrap.dedent("""\
        [data]
        task = "csv"
        csv = "weather.csv"
        targets = ["temperature"]
        window = 20
        horizon = 1
        [model]
        input_size = 2
        hidden_size = 8
        output_size = 1
        [train]
        epochs = 1
        batch_size = 32
        """))
    np.save(work / "x.npy", np.full((2, 30, 2), [1010.0, 25.0], np.float32))
    return work


def test_every_feature_of_the_model_has_std_above_1(wide, stderr):
    """The premise: 1/std scales every feature down, which is what made the Predictor's bound overflow."""
    from lstm_onnx.pipeline.checkpoint import load_checkpoint

    assert np.all(np.asarray(load_checkpoint(wide / "model.pt").normalization.input_std) > 1)


# In this order: each step uses what the one before wrote.
COMMANDS = [
    ["train", "--config", "weather.toml", "-o", "model.pt"],
    ["export", "model.pt", "-o", "model.onnx"],
    ["export", "model.pt", "-o", "serve.onnx", "--stateful", "--lengths"],
    ["inspect", "serve.onnx"],
    ["verify", "model.pt", "model.onnx"],
    ["predict", "model.onnx", "x.npy"],
]


@pytest.fixture(scope="module")
def stderr(wide) -> dict[str, str]:
    return {" ".join(args): cli(wide, *args).stderr for args in COMMANDS}


@pytest.mark.parametrize("command", [" ".join(a) for a in COMMANDS])
def test_each_command_prints_nothing_foreign(stderr, command):
    assert foreign_lines(stderr[command]) == [], stderr[command]


def test_the_predictor_prints_nothing_foreign(wide, stderr):
    code = ("import numpy as np\nfrom lstm_onnx.runtimes.embed import Predictor\n"
            "p = Predictor.load('serve.onnx')\nprint(p.predict(np.full((2, 30, 2), [1010.0, 25.0], np.float32)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=wide, env=quiet_environment(dict(os.environ)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and foreign_lines(done.stderr) == [], done.stderr


def test_serve_starts_without_foreign_output(wide, stderr, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "lstm-pipeline"), "serve", "serve.onnx", "--port", str(port)], cwd=wide,
                                env=quiet_environment(dict(os.environ)), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
    assert foreign_lines(log.read_text(), server=True) == [], log.read_text()


# onnxruntime's quantize_dynamic logs "Please consider to run pre-processing before quantization" on the root
# logger; exporters/precision.py keeps that one line out.
def test_int8_export_prints_nothing_foreign(wide, stderr):
    done = cli(wide, "export", "model.pt", "-o", "int8.onnx", "--quantize", "int8")
    assert foreign_lines(done.stderr) == [], done.stderr
