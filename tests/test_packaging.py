"""The wheel installs one import name, lstm_onnx, and its deploy install (no torch) runs the deploy commands.

Two fresh venvs share the module: `deploy` (the wheel and its base dependencies) and `served` (plus the
[serve] extra). Their outputs are checked against PyTorch run here, in the project venv.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest

from lstm_onnx.runtimes.tolerances import default_tolerance
from tests import models
from tests.wheel_venv import ROOT, build_wheel, clean_env, make_venv

TOL = default_tolerance("float32")
FOLDERS = ["core", "pipeline", "exporters", "runtimes", "serving", "bench", "cli"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def deploy(wheel, tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("deploy") / "venv", wheel)


@pytest.fixture(scope="module")
def served(wheel, tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("served") / "venv", wheel, {"serve"})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A cwd outside the checkout (so no folder of it is importable from there) holding a model and inputs."""
    d = tmp_path_factory.mktemp("work")
    ckpt = models.checkpoint()
    ckpt.save(d / "m.pt")
    models.export(ckpt, d / "m.onnx")
    models.export(ckpt, d / "serve.onnx", stateful=True, lengths=True)  # what `make serve` serves
    x = np.random.default_rng(0).normal(5, 2, (3, 9, models.F)).astype(np.float32)
    np.save(d / "x.npy", x)
    return d, ckpt, x


def run(bindir, *args, cwd):
    return subprocess.run([str(bindir / args[0]), *args[1:]], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=120)


def cli(bindir, work, *args):
    return run(bindir, "lstm-pipeline", *args, cwd=work[0])


def python(bindir, work, code):
    return run(bindir, "python", "-c", code, cwd=work[0])


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=TOL.atol, rtol=TOL.rtol)


def test_wheel_holds_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top_level).decode().split() == ["lstm_onnx"]
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        installed = [line.split(",")[0] for line in zf.read(record).decode().splitlines()]
    assert sorted(installed) == sorted(names)
    tops = {n.split("/")[0] for n in installed if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"lstm_onnx"}
    for folder in FOLDERS:
        assert f"lstm_onnx/{folder}/__init__.py" in names
    assert "lstm_onnx/__init__.py" in names and not any(n.startswith("lstm_onnx/api/") for n in names)
    assert "lstm_onnx/pipeline/csrc/peephole_lstm.cpp" in names


# Prints each name whose import fails with ModuleNotFoundError for that very name; one process for all.
MISSING = ("import importlib, sys\nfor name in sys.argv[1:]:\n    try: importlib.import_module(name)\n"
           "    except ModuleNotFoundError as exc: print(exc.name)")


def test_deploy_venv_has_no_torch_and_no_bare_folder_names(deploy, work):
    r = run(deploy, "python", "-c", MISSING, "torch", *FOLDERS, "lstm_onnx.runtimes", cwd=work[0])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["torch", *FOLDERS]


def test_deploy_venv_has_the_package_api_without_torch(deploy, work):
    r = python(deploy, work, "import sys; from lstm_onnx import Predictor; print(Predictor.__name__, 'torch' in "
                             "sys.modules)\ntry:\n    from lstm_onnx import fit\nexcept ImportError as exc: print(exc)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Predictor False", "lstm_onnx.fit needs the [train] extra (torch): "
                                                        "pip install 'lstm-onnx-pipeline[train]'"]


def test_deploy_venv_imports_the_namespace(deploy, work):
    r = python(deploy, work, "import lstm_onnx.runtimes.embed, lstm_onnx.cli.main, lstm_onnx.pipeline as p; "
                             "print(p.__file__)")
    assert r.returncode == 0, r.stderr
    assert str(deploy.parent) in r.stdout  # the installed copy, not the checkout


def test_help(deploy, work):
    r = cli(deploy, work, "--help")
    assert r.returncode == 0, r.stderr
    for command in ("train", "export", "verify", "predict", "inspect", "serve"):
        assert command in r.stdout


def test_inspect(deploy, work):
    r = cli(deploy, work, "inspect", "m.onnx", "--json")
    assert r.returncode == 0, r.stderr
    assert "LSTM" in r.stdout and json.loads(r.stdout)


def test_verify_model_against_ort_cpu(deploy, work):
    r = cli(deploy, work, "verify", "m.onnx", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["reference"] == "onnxruntime-cpu" and report["passed"]
    assert report["rows"] and all(row["passed"] for row in report["rows"])  # the onnx reference evaluator
    assert all(row["runner"] != "torch" for row in report["rows"])


def test_predict_equals_pytorch(deploy, work):
    d, ckpt, x = work
    r = cli(deploy, work, "predict", "m.onnx", "x.npy", "-o", "y.npy")
    assert r.returncode == 0, r.stderr
    close(np.load(d / "y.npy"), models.torch_reference(ckpt, x))


def test_embedding_api_equals_pytorch_without_torch_click_or_fastapi(deploy, work):
    d, ckpt, x = work
    code = ("import sys, numpy as np; from lstm_onnx.runtimes.embed import Predictor; "
            "np.save('y_embed.npy', Predictor.load('m.onnx').predict(np.load('x.npy'))); "
            "print(sorted(m for m in ('torch', 'click', 'fastapi') if m in sys.modules))")
    r = python(deploy, work, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    close(np.load(d / "y_embed.npy"), models.torch_reference(ckpt, x))


TORCH_COMMANDS = {
    "train": ["train", "-o", "t.pt", "--epochs", "1"],
    "export": ["export", "m.pt", "-o", "e.onnx"],
    "verify CHECKPOINT MODEL": ["verify", "m.pt", "m.onnx"],
    "report": ["report", "m.pt", "-o", "rep"],
    "bench": ["bench", "-o", "b"],
}


@pytest.mark.parametrize("command", TORCH_COMMANDS)
def test_torch_commands_name_the_train_extra(deploy, work, command):
    r = cli(deploy, work, *TORCH_COMMANDS[command])
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"Error: `lstm-pipeline {command}` needs torch: "
                                     f"pip install 'lstm-onnx-pipeline[train]'"]


def test_serve_without_the_extra_names_it(deploy, work):
    r = cli(deploy, work, "serve", "m.onnx")
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert "pip install 'lstm-onnx-pipeline[serve]'" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_serve_predicts_like_pytorch(served, work):
    d, ckpt, x = work
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(served / "lstm-pipeline"), "serve", "serve.onnx", "--port", str(port)], cwd=d,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert _get(base + "/healthz") == (200, {"status": "ok"})
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.1)
        status, body = _get(base + "/v1/predict", {"inputs": [x[0].tolist(), x[1, :4].tolist()]})
        assert status == 200
        close(body["outputs"][0], models.torch_reference(ckpt, x[:1])[0])
        close(body["outputs"][1], models.torch_reference(ckpt, x[1:2, :4])[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = proc.stdout.read()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it so the exit status shows the signal.
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log


def test_editable_install_hides_the_bare_folder_names(tmp_path):
    """The project venv's editable install maps the same namespace: only lstm_onnx.* from outside the checkout."""
    r = subprocess.run([sys.executable, "-c", MISSING, *FOLDERS, "lstm_onnx.pipeline"], cwd=tmp_path,
                       env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == FOLDERS, r.stderr
    r = subprocess.run([sys.executable, "-c", "import lstm_onnx.pipeline as p; print(p.__file__)"], cwd=tmp_path,
                       env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == str(ROOT / "pipeline" / "__init__.py")


def test_python_m_cli_in_the_source_tree():
    r = subprocess.run([sys.executable, "-m", "lstm_onnx.cli", "--help"], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Usage: lstm-pipeline" in r.stdout, r.stderr
