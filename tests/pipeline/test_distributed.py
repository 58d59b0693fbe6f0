"""Data-parallel training: 2 ranks equal one process on the same global batches, checkpoints resume with
another rank count, a killed rank ends the job in one line, and `train --nproc 2` end to end.

Ranks are gloo processes on loopback, spawned with torch.multiprocessing (or by the CLI through torchrun).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lstm_onnx.pipeline import cell, distributed, fastpath
from lstm_onnx.pipeline.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lstm_onnx.pipeline.data import load_dataset
from lstm_onnx.pipeline.dataset import Dataset, Split
from lstm_onnx.pipeline.train import load_state_config, state_path, train

KERNELS = ["compiled", "pytorch"]
STEPS_PER_EPOCH = 9  # 70 training sequences in global batches of 8: 8 full and one of 6 (3 per rank)


def tiny(epochs: int = 3) -> RunConfig:
    """70 train / 15 val sequences: even, so nothing is left out with 2 ranks; val splits 8 + 7."""
    return RunConfig(model=ModelConfig(input_size=2, hidden_size=6, output_size=1, head_dropout=0.0),
                     data=DataConfig(task="adding", window=8, num_samples=100),
                     train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, schedule="plateau"))


def as_dtype(data: Dataset, dtype: torch.dtype) -> Dataset:
    np_dtype = {torch.float64: np.float64, torch.float32: np.float32}[dtype]

    def cast(s: Split) -> Split:
        return Split(s.x.astype(np_dtype), s.y.astype(np_dtype) if s.y.dtype.kind == "f" else s.y)

    return Dataset(cast(data.train), cast(data.val), cast(data.test), data.normalization,
                   data.feature_names, data.target_names)


def quiet(*_):
    pass


def run_here(dtype: torch.dtype, out: Path, epochs: int, resume: Path | None = None) -> None:
    """One training run in this process, as a rank runs it (the default dtype decides the model's)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        config = tiny(epochs)
        train(config, out, progress=False, log=quiet, dataset=as_dtype(load_dataset(config.data), dtype),
              resume=resume)
    finally:
        torch.set_default_dtype(before)


def _rank(rank, world, port, kernel, runs):
    os.environ["LSTM_PIPELINE_NO_EXT"] = "1" if kernel == "pytorch" else "0"
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    try:
        for dtype, out, epochs, resume in runs:  # one spawn for several runs: starting ranks is the slow part
            run_here(dtype, out, epochs, resume)
            if rank == 0:  # which kernel the ranks really ran
                Path(str(out) + ".kernel").write_text("compiled" if cell._compiled[0] else "pytorch")
    finally:
        distributed.shutdown()  # collects train's DDP module first: gloo's threads must not die at exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world, kernel, *runs) -> None:
    """Each run (dtype, out, epochs, resume) in `world` spawned gloo ranks, one after another."""
    mp.spawn(_rank, args=(world, free_port(), kernel, runs), nprocs=world, join=True)
    for run in runs:
        assert Path(str(run[1]) + ".kernel").read_text() == kernel


@pytest.fixture
def kernel_here(request, monkeypatch):
    """Route this process's training through the named kernel, as LSTM_PIPELINE_NO_EXT does for a rank."""
    name = request.param
    if name == "compiled" and not fastpath.available():
        pytest.skip(f"compiled LSTM kernel unavailable: {fastpath.unavailable_reason()}")
    monkeypatch.setattr(cell, "_compiled", [fastpath.fused_lstm_layer if name == "compiled" else None])
    return name


def load_state(out: Path) -> dict:
    return torch.load(state_path(out), map_location="cpu", weights_only=True)


def assert_same_run(a: Path, b: Path, atol: float, rtol: float = 0.0, loss_rel: float = 1e-12) -> None:
    sa, sb = load_state(a), load_state(b)
    assert sa["model"].keys() == sb["model"].keys()
    assert not any(k.startswith("module.") for k in sb["model"])  # the bare module's names, whatever N
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, atol=atol, rtol=rtol, msg=lambda m, k=k: f"{k}: {m}")
    steps = STEPS_PER_EPOCH * sa["epoch"]
    assert sa["optimizer"]["state"][0]["step"] == sb["optimizer"]["state"][0]["step"] == steps
    for ha, hb in zip(sa["history"], sb["history"], strict=True):  # the reduced train and val losses
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=loss_rel)
        assert hb["val_loss"] == pytest.approx(ha["val_loss"], rel=loss_rel)
        assert hb["lr"] == ha["lr"]


@pytest.mark.slow
@pytest.mark.parametrize("kernel_here", KERNELS, indirect=True)
def test_two_ranks_equal_one_process(tmp_path, kernel_here):
    for name, dtype in (("64", torch.float64), ("32", torch.float32)):
        run_here(dtype, tmp_path / f"one{name}.pt", epochs=3)
    run_ranks(2, kernel_here, (torch.float64, tmp_path / "two64.pt", 3, None),
              (torch.float32, tmp_path / "two32.pt", 3, None))
    # float64: only the order of the gradient sums differs (per-rank mean, then DDP's average)
    assert_same_run(tmp_path / "one64.pt", tmp_path / "two64.pt", atol=1e-10, rtol=0)
    streams = load_state(tmp_path / "two64.pt")["torch_rng_ranks"]  # each rank its own dropout stream
    assert len(streams) == 2 and not torch.equal(streams[0], streams[1])
    # float32: the two sum orders differ by a few ulps (~1e-7 relative) per gradient, and Adam divides each
    # gradient by its own running RMS, so that relative error reaches the step (lr 1e-2). Measured after 27
    # steps: 6e-8 (one ulp at |w| ~ 0.5); 1e-6 leaves room for other thread counts' sum orders. The
    # losses are float32 means summed in another order: a few ulps, 1e-6 relative.
    assert_same_run(tmp_path / "one32.pt", tmp_path / "two32.pt", atol=1e-6, loss_rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kernel_here", ["pytorch"], indirect=True)
def test_resume_with_another_rank_count(tmp_path, kernel_here):
    run_here(torch.float64, tmp_path / "straight.pt", epochs=4)
    # 2 ranks for 2 epochs, then 1 process to epoch 4
    run_ranks(2, kernel_here, (torch.float64, tmp_path / "a.pt", 2, None))
    run_here(torch.float64, tmp_path / "a.pt", epochs=4, resume=state_path(tmp_path / "a.pt"))
    assert_same_run(tmp_path / "straight.pt", tmp_path / "a.pt", atol=1e-10, rtol=0)
    # 1 process for 2 epochs, then 2 ranks to epoch 4
    run_here(torch.float64, tmp_path / "b.pt", epochs=2)
    run_ranks(2, kernel_here, (torch.float64, tmp_path / "b.pt", 4, state_path(tmp_path / "b.pt")))
    assert_same_run(tmp_path / "straight.pt", tmp_path / "b.pt", atol=1e-10, rtol=0)


def test_shards_are_equal_and_cover_the_global_batches():
    order = np.random.default_rng(0).permutation(23)
    worlds = [distributed.World(rank=r, size=3) for r in range(3)]
    shards = [distributed.shard(order, w) for w in worlds]
    assert [len(s) for s in shards] == [7, 7, 7]  # 23 = 3 * 7 + 2: the last two of the order left out
    b = 2  # per-rank batch; step k of all ranks is the k-th global batch of 6 of the same order
    for k in range(4):
        step = np.concatenate([s[k * b:(k + 1) * b] for s in shards])
        assert sorted(step) == sorted(order[:21][k * 3 * b:(k + 1) * 3 * b])
    assert distributed.shard(order, distributed.World()) is order


def test_batch_size_must_divide_among_ranks():
    assert distributed.per_rank_batch(32, distributed.World(size=4)) == 8
    with pytest.raises(ValueError, match="global batch and must divide evenly among 3 processes"):
        distributed.per_rank_batch(32, distributed.World(size=3))


def test_threads_share_the_cores_unless_given():
    assert distributed.threads_for(distributed.World(size=4, local_size=2), 0, cores=16) == 8
    assert distributed.threads_for(distributed.World(size=4, local_size=4), 0, cores=2) == 1
    assert distributed.threads_for(distributed.World(size=4, local_size=4), 3, cores=2) == 3


def test_env_world_reads_torchrun():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert distributed.env_world(env) == distributed.World(3, 4, 1, 2)
    assert distributed.env_world({}) is None
    with pytest.raises(ValueError, match="must be integers"):
        distributed.env_world({**env, "RANK": "x"})


# what torchrun 2.x prints on stderr when rank 1 is killed, after a line of the ranks' own
TORCHRUN_STDERR = """*****************************************
Setting OMP_NUM_THREADS environment variable for each process to be 1 in default, to avoid your system
*****************************************
warning: data co2: a rank's own line
W1203 09:55:34.945000 10239 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 10292 closing
E1203 09:55:34.961000 10239 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 10292)  (SIGTERM)
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 10293)  (SIGKILL)
=======================================================
"""


def fake_torchrun(stderr_text: str, code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.stderr.write({stderr_text!r}); sys.exit({code})"]


def test_launch_reads_the_root_cause_and_hides_torchruns_wall():
    import io

    err = io.StringIO()
    result = distributed.launch(fake_torchrun(TORCHRUN_STDERR, 1), err=err)
    assert (result.returncode, result.failed_rank, result.exitcode) == (1, 1, -9)  # not rank 0's SIGTERM
    assert err.getvalue() == "warning: data co2: a rank's own line\n"
    assert distributed.describe_exit(result.exitcode) == "was killed (SIGKILL)"
    assert distributed.describe_exit(2) == "exited with status 2"


def test_launch_shows_a_ranks_own_traceback_and_says_a_repeated_error_once():
    import io

    rank_bug = "Traceback (most recent call last):\n  File \"x.py\", line 1\nZeroDivisionError: division by zero\n"
    text = "Error: bad data\nError: bad data\n" + rank_bug + TORCHRUN_STDERR.split("Traceback", 1)[0] \
        + "Traceback" + TORCHRUN_STDERR.split("Traceback", 1)[1]
    err = io.StringIO()
    result = distributed.launch(fake_torchrun(text, 1), err=err)
    assert result.rank_reported and result.failed_rank == 1
    assert err.getvalue().count("Error: bad data") == 1
    assert "ZeroDivisionError: division by zero" in err.getvalue() and "ChildFailedError" not in err.getvalue()


TOML = """
[data]
task = "adding"
window = 8
num_samples = 100

[model]
input_size = 2
hidden_size = 6
head_dropout = 0.0
output_size = 1

[train]
epochs = {epochs}
batch_size = 8
"""


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lstm_onnx.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_cli_nproc_trains_a_checkpoint_that_exports_and_verifies(tmp_path):
    from click.testing import CliRunner

    from lstm_onnx.cli.main import cli as lstm_cli

    (tmp_path / "tiny.toml").write_text(TOML.format(epochs=2))
    out = tmp_path / "m.pt"
    proc = cli("train", "--nproc", "2", "--config", str(tmp_path / "tiny.toml"), "-o", str(out))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "data-parallel: 2 processes (gloo)" in stdout and f"wrote {out}" in stdout
    assert "Traceback" not in stderr
    runner = CliRunner()
    res = runner.invoke(lstm_cli, ["export", str(out), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    # the torch model from the checkpoint against onnxruntime (the other runners add time, not coverage)
    res = runner.invoke(lstm_cli, ["verify", str(out), str(tmp_path / "m.onnx"), "--runner", "onnxruntime-cpu"])
    assert res.exit_code == 0, res.output


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the process below `launcher` whose torchrun environment says RANK=rank."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            pid, parents = int(entry.name), []
            while pid > 1 and len(parents) < 8:  # its ancestors, up to our launcher
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.append(pid)
        except (OSError, ValueError, IndexError):
            continue
        if launcher in parents and f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID" in b" ".join(env):
            return int(entry.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's pid in /proc (Linux)")
def test_a_killed_rank_ends_the_job_in_one_line_and_the_state_survives(tmp_path):
    (tmp_path / "tiny.toml").write_text(TOML.format(epochs=100000))
    out = tmp_path / "m.pt"
    proc = cli("-q", "train", "--nproc", "2", "--config", str(tmp_path / "tiny.toml"), "-o", str(out))
    try:
        deadline = time.monotonic() + 120
        while not state_path(out).exists() or (pid := rank_pid(proc.pid, 1)) is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(0.3)  # into the next epochs, so the kill may land mid-write
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("Error: rank 1 was killed (SIGKILL); torchrun stopped the others"), lines
    assert f"continue with `lstm-pipeline train --resume -o {out}`" in lines[0]
    config = load_state_config(state_path(out))  # the state is whole, and training goes on from it
    epoch = load_state(out)["epoch"]
    config.train.epochs = epoch + 1
    ckpt = train(config, out, progress=False, log=quiet, resume=state_path(out))
    assert ckpt.metrics["epochs_run"] == epoch + 1
