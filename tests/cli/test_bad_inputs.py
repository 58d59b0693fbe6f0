"""The CLI's bad-input harness: every command on the corpus (tests/cli/corpus.py) ends with exit code != 0 and
exactly one line on stderr naming the file or argument and what was expected, never a traceback; a refused
command leaves its output as it was. A few cases run as real processes (real stderr, a real full disk); under
FUZZ_SCALE > 1 seeded random corruptions of real artifacts run too (bit flips, truncations)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests.cli import corpus
from tests.harness import record, scale

pytestmark = pytest.mark.harness
ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("lstm-pipeline")


class Started(Exception):
    """A command that should have been refused got as far as running."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def no_runs(monkeypatch):
    """bench and serve cases must be refused before a benchmark or a server starts."""
    import lstm_onnx.bench.run
    import lstm_onnx.serving.server

    def started(*args, **kwargs):
        raise Started("started instead of refusing")

    monkeypatch.setattr(lstm_onnx.bench.run, "run_bench", started)
    monkeypatch.setattr(lstm_onnx.serving.server, "serve", started)


def problem(exit_code: int, stderr: str, output: str, words: list[str], exception=None) -> str:
    """'' if the run met the invariant, else what broke it."""
    if exception is not None and not isinstance(exception, SystemExit):
        return f"raised {type(exception).__name__}: {exception}"
    if "Traceback" in output:
        return "traceback: " + output.strip().splitlines()[-1]
    if exit_code == 0:
        return "exit code 0: " + output.strip()[-200:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {lines[:4]}"
    missing = [w for w in words if w not in lines[0]]
    return f"{missing} not in {lines[0]!r}" if missing else ""


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("case", corpus.cases(), ids=lambda c: c.name)
def test_bad_input_is_one_line(case, files, no_runs):
    kept = corpus.victim(files).read_bytes() if case.keep else None
    r = invoke(corpus.fill(files, case.args))
    why = problem(r.exit_code, r.stderr, r.output, corpus.fill(files, case.expect), r.exception)
    if kept is not None and (files["dir"] / case.keep).read_bytes() != kept:
        why = why or f"{case.keep} was overwritten"
    record("cli", not why, f"{case.name}: {why}")
    assert not why, why


def test_verify_model_with_external_data_keeps_its_folder(files):
    """The peephole diagnosis reruns the model from memory: its external weights must still be found."""
    pytest.importorskip("openvino")
    r = invoke(["verify", str(files["ext_model"]), "--runner", "openvino-cpu"])
    ok = r.exit_code == 1 and "likely dropped P" in r.output and "could not check" not in r.output
    record("cli", ok, f"verify external data: {r.output[-300:]}")
    assert ok, r.output


def test_zip_bomb_is_refused_before_inflating(files, monkeypatch):
    """The cap is checked against each member's header: nothing is inflated past it."""
    import zipfile

    inflated = []
    real_read = zipfile.ZipExtFile.read

    def read(self, n=-1):
        data = real_read(self, n)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    r = invoke(["verify", str(files["model"]), "--inputs", str(files["bomb_npz"])])
    why = problem(r.exit_code, r.stderr, r.output, ["GiB"], r.exception)
    why = why or (f"inflated {sum(inflated)} bytes" if sum(inflated) > 1 << 20 else "")
    record("cli", not why, f"zip bomb: {why}")
    assert not why, why


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, **kwargs)


REAL = [corpus.C("real verify --inputs trunc", "verify {model} --inputs {trunc_npz}", "{trunc_npz}", "not a readable"),
        corpus.C("real train --epochs 0", "train --config {cfg_tiny} -o {dir}/victim.pt --epochs 0", "--epochs",
                 ">= 1", keep="victim.pt"),
        corpus.C("real export -o /proc", "export {ckpt} -o {nope}/x.onnx", "{nope}/x.onnx", "cannot write")]


@pytest.mark.parametrize("case", REAL, ids=lambda c: c.name)
def test_real_process_stderr(case, files):
    if not EXE.exists():
        pytest.skip(f"{EXE} is not installed")
    kept = corpus.victim(files).read_bytes() if case.keep else None
    p = _run([str(EXE), *corpus.fill(files, case.args)])
    why = problem(p.returncode, p.stderr, p.stdout + p.stderr, corpus.fill(files, case.expect))
    if kept is not None and (files["dir"] / case.keep).read_bytes() != kept:
        why = why or f"{case.keep} was overwritten"
    record("cli", not why, f"{case.name}: {why}")
    assert not why, why


FULL_DISK_SCRIPT = """
import json, os, sys
from pathlib import Path
from click.testing import CliRunner
from lstm_onnx.cli.main import cli
from tests.cli import corpus

files = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}
full = files["full"]
fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)  # the disk is full before the command starts
try:
    while True:
        os.write(fd, b"\\0" * 4096)
except OSError:
    os.close(fd)
out = []
for name, args, target in corpus.FULL_DISK:
    r = CliRunner().invoke(cli, corpus.fill(files, args.split()))
    left = sorted(p.name for p in full.iterdir() if p.name != "filler")
    out.append(dict(name=name, exit_code=r.exit_code, stderr=r.stderr, output=r.output, left=left,
                    exception=None if r.exception is None or isinstance(r.exception, SystemExit)
                    else f"{type(r.exception).__name__}: {r.exception}", target=corpus.fill(files, [target])[0]))
print(json.dumps(out))
"""


def test_full_disk(files, tmp_path):
    """On a real full disk (a tiny tmpfs in a private mount namespace): one line, nothing half-written."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to mount a private tmpfs")
    full = tmp_path / "full"
    full.mkdir()
    paths = json.dumps({**{k: str(v) for k, v in files.items()}, "full": str(full)})
    mount = f"mount -t tmpfs -o size=256k tmpfs {full}"
    p = _run(["unshare", "-rm", "sh", "-c", f'{mount} && exec "$0" -c "$1" "$2"', sys.executable,
              FULL_DISK_SCRIPT, paths])
    if p.returncode != 0 and "mount" in p.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()[-200:]}")
    assert p.returncode == 0, p.stderr[-2000:]
    for res in json.loads(p.stdout.strip().splitlines()[-1]):
        why = problem(res["exit_code"], res["stderr"], res["output"], [res["target"], "No space left on device"],
                      res["exception"] and Exception(res["exception"]))
        why = why or (f"left {res['left']} behind" if res["left"] else "")
        record("cli", not why, f"full disk {res['name']}: {why}")
        assert not why, (res["name"], why)


# -- random corruptions of real artifacts -----------------------------------------------------------------

FUZZ_TARGETS = [("ckpt", "export {bad} -o {dir}/fuzz.onnx"), ("model", "inspect {bad}"),
                ("model", "predict {bad} {x_npy}"), ("in_npz", "verify {model} --inputs {bad} --runner onnx-reference"),
                ("x_npy", "predict {model} {bad}")]


def corrupt(data: bytes, rng) -> tuple[bytes, str]:
    if rng.random() < 0.5:
        cut = int(rng.integers(0, len(data)))
        return data[:cut], f"truncated at {cut}"
    buf = bytearray(data)
    flips = rng.integers(0, len(buf) * 8, size=int(rng.integers(1, 9)))
    for bit in flips:
        buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf), f"bits {sorted(int(b) for b in flips)} flipped"


@pytest.mark.parametrize("source,command", FUZZ_TARGETS, ids=lambda v: v.split()[0] if " " in v else v)
def test_random_corruptions(source, command, files, tmp_path):
    """A corrupted artifact either still works (exit 0; verify may report a mismatch, exit 1) or is one line."""
    good = files[source].read_bytes()
    rng = np.random.default_rng([ord(c) for c in source + command])  # seeded per target
    for i in range(2 * scale()):
        data, how = corrupt(good, rng)
        bad = tmp_path / f"bad{i}{files[source].suffix}"
        bad.write_bytes(data)
        r = invoke(corpus.fill({**files, "bad": bad}, command.split()))
        report = command.startswith("verify") and r.exit_code in (1, 3) and not r.stderr.strip()
        why = "" if r.exit_code == 0 and r.exception is None or report else \
            problem(r.exit_code, r.stderr, r.output, [], r.exception)
        if r.exit_code == 0 and "Traceback" in r.output:
            why = "traceback with exit code 0"
        record("cli", not why, f"{command.split()[0]} on {source} {how}: {why}")
        assert not why, (how, why)
