"""Data-parallel training (DDP): who this process is, the shard it trains on, and the sums across ranks.

`train.train` runs data-parallel whenever a default process group is initialized (torchrun, or a test that
spawns ranks); otherwise `World()` is one process and every function here is the identity. docs/training.md
states the contract: the config's batch size is the global batch, split evenly across ranks; each epoch's
shuffled order is the same on every rank and the remainder (n mod N sequences) is dropped so shards are equal;
gradients are averaged (DDP), and losses, early stopping and the LR schedule see values summed across ranks.
"""
from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from lstm_onnx.core.threads import usable_cores

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_world(env=None) -> World | None:
    """The World torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (LOCAL_WORLD_SIZE), None outside it."""
    env = os.environ if env is None else env
    if not all(k in env for k in ENV_KEYS):
        return None
    try:
        rank, size, local = (int(env[k]) for k in ENV_KEYS)
        local_size = int(env.get("LOCAL_WORLD_SIZE", size))
    except ValueError:
        raise ValueError(f"torchrun's {'/'.join(ENV_KEYS)} must be integers, got "
                         f"{', '.join(repr(env[k]) for k in ENV_KEYS)}") from None
    if not (0 <= rank < size and 0 <= local < local_size):
        raise ValueError(f"RANK {rank} / WORLD_SIZE {size} / LOCAL_RANK {local} do not describe a process")
    return World(rank, size, local, local_size)


def current() -> World:
    """This process's place in the initialized default group (World() when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    size = dist.get_world_size()
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))  # spawned without torchrun: one machine
    return World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", dist.get_rank())), local_size)


def backend(device: torch.device) -> str:
    """nccl for a CUDA model (`train --device cuda`), gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(world: World, device: torch.device = torch.device("cpu")) -> None:
    """Join torchrun's rendezvous (MASTER_ADDR/MASTER_PORT from its environment)."""
    dist.init_process_group(backend(device), rank=world.rank, world_size=world.size)


def shutdown() -> None:
    """Leave the group. A DistributedDataParallel module still alive holds the group (its Reducer does), so
    destroy_process_group would leave gloo's worker threads to die at interpreter exit, which aborted ranks
    with "terminate called without an active exception" (make bench-ddp, 4 runs in 6); collecting the
    modules first (they sit in reference cycles) ends the group here, in order."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def threads_for(world: World, requested: int, cores: int | None = None) -> int:
    """`requested` if set; else this machine's cores shared out among its ranks (torchrun's default is 1)."""
    if requested:
        return requested
    if cores is None:
        cores = usable_cores()
    return max(1, cores // world.local_size)


def per_rank_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise ValueError(f"train.batch_size {batch_size} is the global batch and must divide evenly among "
                         f"{world.size} processes; use a multiple of {world.size}")
    return batch_size // world.size


def shard(order: np.ndarray, world: World) -> np.ndarray:
    """This rank's part of an epoch's order: DistributedSampler(drop_last=True) over it, so rank r holds
    order[r::N] of the first N * (n // N). Read in per-rank batches of b, step k of all ranks together
    covers order[k*N*b:(k+1)*N*b]: the global batch one process takes from the same order."""
    if not world.distributed:
        return order
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(order, num_replicas=world.size, rank=world.rank, shuffle=False, drop_last=True)
    return order[np.fromiter(iter(sampler), dtype=np.int64)]


def sum_across(*values: float, world: World) -> list[float]:
    """Each value summed over the ranks (float64), the same result on every rank."""
    if not world.distributed:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.tolist()


def _collective_device() -> torch.device:
    """nccl reduces CUDA tensors only: the current GPU (device.use set it); gloo the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_objects(obj, world: World) -> list:
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The dropout stream of rank > 0: seed + rank at the start; mixed with the epoch when a resume has no
    saved stream for this rank (a run resumed with more ranks than it had)."""
    if epoch == 0:
        return seed + rank
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def build_kernel_once(world: World) -> None:
    """Build (or load) the compiled kernel in local rank 0 first, then in the others from its cache: one
    compiler run per machine, never N at once on the same cores. (fastpath's own file lock would keep
    concurrent builds correct too, but N ranks would each wait out the build holding a core.)"""
    if not world.distributed:
        return
    from lstm_onnx.pipeline import cell

    if world.local_rank == 0:
        cell._compiled_kernel()
    barrier(world)
    if world.local_rank != 0:
        cell._compiled_kernel()


# --- `train --nproc N`: the launcher side (the parent process, before any rank exists) ---

# torchrun's own log lines (glog style, "W1203 09:55:34.945000 10239 torch/...] ..."); the ranks print none
_AGENT_LOG = re.compile(r"^\[?[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\] ")
_BANNER = ("*****", "Setting OMP_NUM_THREADS environment variable")  # torchrun's notice; we set threads
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_ROOT_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
LAUNCHER_ENV = "LSTM_PIPELINE_LAUNCHED"


def under_launcher() -> bool:
    """Whether `train --nproc` started this rank (it then reports a failure itself)."""
    return os.environ.get(LAUNCHER_ENV) == "1"


def torchrun_command(nproc: int, cli_args: list[str]) -> list[str]:
    """This CLI again under torchrun, on this machine (--standalone: a c10d rendezvous on a free local port).
    `cli_args` must not hold --nproc (the ranks must not launch again): cli/main.py leaves it out."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "lstm_onnx.cli", *cli_args]


@dataclass
class LaunchResult:
    returncode: int
    failed_rank: int | None = None  # torchrun's root cause
    exitcode: int | None = None  # that rank's exit status (negative: killed by that signal)
    rank_reported: bool = False  # a rank printed its own one-line error
    interrupted: bool = False  # Ctrl-C: torchrun got it too and stopped the ranks


def launch(cmd: list[str], err=None) -> LaunchResult:
    """Run torchrun, relaying the ranks' stderr as it comes; torchrun's log lines and its ChildFailedError
    traceback are held back and read for the failed rank, which the caller reports in one line."""
    err = err or sys.stderr
    env = {**os.environ, LAUNCHER_ENV: "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace", env=env)
    held: list[str] = []
    errors: set[str] = set()
    try:
        for line in proc.stderr:
            if _AGENT_LOG.match(line) or line.startswith(_BANNER) or not line.strip():
                continue  # (a blank line: click's, in a rank that got Ctrl-C)
            if held or line.startswith("Traceback (most recent call last)"):
                held.append(line)  # torchrun's failure wall, or a rank's traceback: decided at the end
                continue
            if line.startswith("Error: "):
                if line in errors:  # the same error from every rank (bad data): say it once
                    continue
                errors.add(line)
            err.write(line)
            err.flush()
    except KeyboardInterrupt:  # torchrun got the same SIGINT and stops the ranks; let it finish
        return LaunchResult(_drain(proc), interrupted=True)
    rc = proc.wait()
    return _read_failure(rc, held, bool(errors), err)


def _drain(proc: subprocess.Popen) -> int:
    """Wait for torchrun to stop its ranks, reading (and dropping) what they print meanwhile so that no
    one blocks on a full pipe."""
    while True:
        try:
            for _ in proc.stderr:
                pass
            return proc.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            proc.kill()


def _read_failure(rc: int, held: list[str], reported: bool, err) -> LaunchResult:
    wall = next((i for i, ln in enumerate(held) if "ChildFailedError" in ln), None)
    start = wall
    while start is not None and start > 0 and not held[start].startswith("Traceback"):
        start -= 1
    for line in held[:start] if start is not None else held:  # a rank's own traceback: a bug, show it
        err.write(line)
    result = LaunchResult(rc, rank_reported=reported)
    if wall is not None:
        root = next((i for i in range(wall, len(held)) if held[i].startswith("Root Cause")), wall)
        for ln in held[root:]:
            if result.failed_rank is None and (m := _ROOT_RANK.match(ln)):
                result.failed_rank = int(m.group(1))
            elif result.exitcode is None and (m := _ROOT_EXIT.match(ln)):
                result.exitcode = int(m.group(1))
    return result


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    return f"exited with status {code}"


def peer_lost(exc: BaseException) -> bool:
    """Whether a collective failed because another rank went away (gloo: RuntimeError 'Connection closed
    by peer' / 'reset'; nccl: DistBackendError)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("connection closed", "connection reset", "gloo", "nccl", "broken pipe"))
