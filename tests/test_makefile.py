"""The Makefile names artifacts per config: `make -n` (a dry run) after faking what `make demo` leaves.

A fake venv and fake artifacts in a temporary ART keep the dry run off the real .venv and artifacts/.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CO2 = "configs/co2.toml"
DEFAULT_CHAIN = ["model.pt", "model.onnx", "model-serve.onnx", "parity.json"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")


def touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (mtime, mtime))


@pytest.fixture
def dirs(tmp_path):
    """(art, venv): a venv newer than pyproject.toml, and the default chain after it, in chain order."""
    art, venv = tmp_path / "art", tmp_path / "venv"
    t = max((ROOT / "pyproject.toml").stat().st_mtime, (ROOT / CO2).stat().st_mtime) + 10
    touch(venv / ".installed", t)
    for k, name in enumerate(DEFAULT_CHAIN):
        touch(art / name, t + 1 + k)
    return art, venv


def dry_run(dirs, *args) -> str:
    art, venv = dirs
    # Under `make test CONFIG=...` the parent's variables would reach this make through the environment.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CONFIG"}}
    r = subprocess.run(["make", "-n", "-C", str(ROOT), "--no-print-directory", f"ART={art}", f"VENV={venv}",
                        *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def commands(out: str, cli_command: str) -> list[str]:
    return [ln for ln in out.splitlines() if f"lstm-pipeline {cli_command} " in ln]


def test_default_chain_is_up_to_date(dirs):
    assert "Nothing to be done for 'train'" in dry_run(dirs, "train")
    assert "Nothing to be done for 'verify'" in dry_run(dirs, "verify")


def test_config_trains_exports_and_verifies_its_own_files(dirs):
    art, _ = dirs
    out = dry_run(dirs, f"CONFIG={CO2}", "verify")
    co2 = art / "co2"
    assert commands(out, "train") == [f"{dirs[1]}/bin/lstm-pipeline train --config {CO2} -o {co2}/model.pt"]
    assert commands(out, "export") == [f"{dirs[1]}/bin/lstm-pipeline export {co2}/model.pt -o {co2}/model.onnx"]
    (verify,) = commands(out, "verify")
    assert f"verify {co2}/model.pt {co2}/model.onnx --json > {co2}/parity.json.tmp" in verify
    assert f"mv {co2}/parity.json.tmp {co2}/parity.json" in out
    # Nothing in the co2 chain reads or writes the default chain's files.
    for name in DEFAULT_CHAIN:
        assert f"{art}/{name}" not in out, name


def test_report_with_config_reports_that_config(dirs):
    art, _ = dirs
    out = dry_run(dirs, f"CONFIG={CO2}", "report")
    (report,) = commands(out, "report")
    assert report.endswith(f"report {art}/co2/model.pt -o {art}/co2/report")
    assert len(commands(out, "train")) == 1
    # The default report is still of the default checkpoint, and trains nothing.
    out = dry_run(dirs, "report")
    assert commands(out, "train") == []
    (report,) = commands(out, "report")
    assert report.endswith(f"report {art}/model.pt -o {art}/report")


def test_serving_targets_follow_the_config(dirs):
    art, _ = dirs
    out = dry_run(dirs, f"CONFIG={CO2}", "serve")
    assert f"export {art}/co2/model.pt -o {art}/co2/model-serve.onnx --stateful --lengths" in out
    assert f"serve {art}/co2/model-serve.onnx" in out
    assert commands(dry_run(dirs, "serve"), "export") == []


def test_a_changed_config_retrains(dirs, tmp_path):
    art, _ = dirs
    config = tmp_path / "co2.toml"
    config.write_text((ROOT / CO2).read_text())
    t = (art / "parity.json").stat().st_mtime
    touch(config, t + 1)
    for k, name in enumerate(["model.pt", "model.onnx", "parity.json"]):
        touch(art / "co2" / name, t + 2 + k)
    assert "Nothing to be done for 'verify'" in dry_run(dirs, f"CONFIG={config}", "verify")
    touch(config, t + 10)
    out = dry_run(dirs, f"CONFIG={config}", "verify")
    assert commands(out, "train")[0].endswith(f"train --config {config} -o {art}/co2/model.pt")
    assert len(commands(out, "export")) == 1 and len(commands(out, "verify")) == 1
    assert "Nothing to be done for 'verify'" in dry_run(dirs, "verify")
