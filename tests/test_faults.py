"""Fault harness: kill -9 at seeded random points of real `lstm-pipeline train` and `export` runs. After each
kill every target is the old file or the complete new one, and the next write leaves no temp file. A real full
disk (a small private tmpfs) on the checkpoint and ONNX writers: a one-line ArtifactWriteError, the old file
intact, nothing left behind.

Half the kills land at any time of the run; the other half wait for the k-th write to start (a new temp file,
or a target changed in place as a non-atomic writer would) and strike within a few milliseconds, so that they
land mid-write (each case's detail says where it landed)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest
import torch

from lstm_onnx.core.fileio import atomic_path
from lstm_onnx.pipeline.checkpoint import load_checkpoint
from lstm_onnx.pipeline.config import load_run_config
from lstm_onnx.pipeline.train import load_state_config, train
from tests.harness import record, scale
from tests.tmpfs import private_tmpfs

pytestmark = pytest.mark.harness

KILLS = 3  # of each command in the fast slice; FUZZ_SCALE multiplies
EPOCHS = 2  # train writes OUT.state after each epoch, then OUT: EPOCHS + 1 writes to strike at
TINY = f"""
[data]
task = "synthetic"
num_features = 4
window = 8
length = 300

[model]
input_size = 4
hidden_size = 256  # a checkpoint of ~1 MB and a training state of ~4 MB: writes that take a few ms
output_size = 4
head_dropout = 0.0

[train]
epochs = {EPOCHS}
batch_size = 64
threads = 1
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstm_onnx.cli", "-q", *args]


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def _stat(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class _WriteWatch:
    """Counts writes as they start: a new temp file beside the targets, or a target changed in place (same
    inode, new size or mtime: what a non-atomic writer does; a rename brings a new inode)."""

    def __init__(self, targets: list[Path]):
        self.folder, self.targets = targets[0].parent, targets
        self.temps: set[str] = set()
        self.stats = {t: _stat(t) for t in targets}
        self.count = 0

    def poll(self) -> int:
        new = set(_temps(self.folder)) - self.temps
        self.temps |= new
        self.count += len(new)
        for target in self.targets:
            now, before = _stat(target), self.stats[target]
            if now and before and now[0] == before[0] and now != before:
                self.count += 1
            self.stats[target] = now
        return self.count


def _kill_at_random(cmd: list[str], targets: list[Path], rng: random.Random, at_write: bool, span: float,
                    writes: int) -> str:
    """Run `cmd` beside `targets` and kill -9 it: at a random time in the first `span` seconds, or (at_write)
    within 4 ms of the k-th write's start (k random in 1..writes). Return where the kill landed."""
    folder = targets[0].parent
    log = folder.parent / "stderr.txt"
    watch = _WriteWatch(targets)
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + (60 if at_write else rng.uniform(0.3, span))
    kth = rng.randint(1, writes)
    while proc.poll() is None and time.monotonic() < deadline:
        if at_write and watch.poll() >= kth:
            time.sleep(rng.uniform(0, 0.004))
            break
        time.sleep(0.0005 if at_write else 0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the run's own process group (start_new_session)
    code = proc.wait()
    if code == 0:
        return "after the run completed"
    if code != -signal.SIGKILL:
        return f"run failed by itself (exit {code}): {log.read_text()[-300:]}"
    return "mid-write: a temp file was left" if _temps(folder) else "no temp file left"


def _next_write_sweeps(targets: list[Path]) -> str | None:
    """The next write to each target (its current bytes again) must remove every temp file a kill left."""
    for target in targets:
        if target.exists():
            data = target.read_bytes()
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
    left = _temps(targets[0].parent)
    return f"temp files survived the next write: {left}" if left else None


def _check(path: Path, old: bytes, is_complete_new) -> str | None:
    """None if `path` is the old file or a complete new one, else what it is."""
    if not path.exists():
        return f"{path.name} vanished"
    if path.read_bytes() == old:
        return None
    try:
        problem = is_complete_new(path)
    except Exception as exc:  # a truncated file fails in the loader, whatever it raises
        problem = f"does not load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return f"{path.name} is neither the old file nor a complete new one: {problem}" if problem else None


def _run_kills(name: str, cmd: list[str], folder: Path, checks: dict, span: float, writes: int, seed: int):
    rng = random.Random(seed)
    failures = []
    for i in range(KILLS * scale()):
        old = {path: path.read_bytes() for path in checks}
        where = _kill_at_random(cmd, list(checks), rng, at_write=i % 2 == 0, span=span, writes=writes)
        problems = [p for p in (_check(path, old[path], ok) for path, ok in checks.items()) if p]
        if where.startswith("run failed"):
            problems.append("the run failed before any kill")
        swept = _next_write_sweeps(list(checks))
        problems += [swept] if swept else []
        detail = f"{name} kill {i} (seed {seed}, {where})" + (": " + "; ".join(problems) if problems else "")
        record("faults", not problems, detail)
        if problems:
            failures.append(detail)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "tiny.toml"
    path.write_text(TINY)
    return path


def test_kill_during_train_leaves_old_or_complete_checkpoint(tmp_path, tiny_config):
    folder = tmp_path / "run"
    folder.mkdir()
    # The old files, and the weights every killed run would write (training is seeded): a new checkpoint
    # differs from the old one in its bytes (train_seconds), not in its weights.
    expected = train(load_run_config(tiny_config), folder / "model.pt", progress=False, log=lambda *_: None)

    def complete_checkpoint(path):
        ckpt = load_checkpoint(path)
        same = all(torch.equal(ckpt.state_dict[k], v) for k, v in expected.state_dict.items())
        return None if same else "loads, but its weights are not the run's"

    def complete_state(path):
        saved = load_state_config(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = saved.model == expected.config.model and 1 <= state["epoch"] <= EPOCHS
        return None if ok else f"loads, but is not this run's state (epoch {state['epoch']})"

    checks = {folder / "model.pt": complete_checkpoint, folder / "model.pt.state": complete_state}
    cmd = _cli("train", "--config", str(tiny_config), "-o", "model.pt")
    _run_kills("train", cmd, folder, checks, span=4.0, writes=EPOCHS + 1, seed=14)


def test_kill_during_export_leaves_old_or_complete_model(tmp_path):
    from lstm_onnx.bench.models import random_checkpoint
    from lstm_onnx.exporters.export import export_checkpoint, file_sha256

    folder = tmp_path / "run"
    folder.mkdir()
    random_checkpoint(4, 256, seed=0).save(folder / "model.pt")  # ~1 MB of ONNX: a write of a few ms
    ckpt = load_checkpoint(folder / "model.pt")
    export_checkpoint(ckpt, tmp_path / "new.onnx", checkpoint_sha256=file_sha256(folder / "model.pt"))
    new = (tmp_path / "new.onnx").read_bytes()  # export is deterministic: the killed runs write exactly this
    export_checkpoint(random_checkpoint(4, 256, seed=1), folder / "model.onnx")
    assert (folder / "model.onnx").read_bytes() != new

    def complete_model(path):
        onnx.checker.check_model(str(path), full_check=True)
        return None if path.read_bytes() == new else "passes onnx.checker but is not the export's bytes"

    cmd = _cli("export", "model.pt", "-o", "model.onnx")
    _run_kills("export", cmd, folder, {folder / "model.onnx": complete_model}, span=3.5, writes=1, seed=15)


FULL_DISK = textwrap.dedent("""
    import os, sys
    from lstm_onnx.bench.models import random_checkpoint
    from lstm_onnx.core.fileio import ArtifactWriteError
    from lstm_onnx.exporters.export import export_checkpoint
    folder = sys.argv[1]
    ckpt = random_checkpoint(4, 256, seed=0)  # ~1 MB of weights into a 256 KiB disk
    for name, write in (("model.pt", ckpt.save), ("model.onnx", lambda p: export_checkpoint(ckpt, p, validate=False))):
        target = os.path.join(folder, name)
        with open(target, "wb") as fh:
            fh.write(b"old")
        try:
            write(target)
            print(name, "written")
        except ArtifactWriteError as exc:
            print(exc)
        except Exception as exc:
            print(name, "raised", type(exc).__name__, str(exc).splitlines()[:1])
        print(open(target, "rb").read(), sorted(os.listdir(folder)))
        os.remove(target)
""")


def test_full_disk_on_train_and_export_writers(tmp_path):
    runner = private_tmpfs()
    if runner is None:
        pytest.skip("cannot mount a private tmpfs here (unshare -rm)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run([*runner, "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$1" && "$2" -c "$3" "$1"',
                          "sh", str(mnt), sys.executable, FULL_DISK], capture_output=True, text=True, timeout=120)
    expected = []
    for name in ("model.pt", "model.onnx"):
        expected += [f"cannot write {mnt}/{name}: No space left on device", f"b'old' ['{name}']"]
    lines = res.stdout.splitlines()
    for i, name in enumerate(("model.pt", "model.onnx")):
        clean = res.returncode == 0 and lines[2 * i:2 * i + 2] == expected[2 * i:2 * i + 2]
        record("faults", clean, f"full disk writing {name}: {lines[2 * i:2 * i + 2]} {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr
    assert lines == expected

