"""Thread counts and the worker wait policy for every command (train, bench, predict, verify, serve).

Usable cores are the CPUs this process may run on (affinity) capped by its cgroup CPU quota, not the
machine's count. Idle worker threads yield instead of spinning: OpenMP (torch) gets OMP_WAIT_POLICY=PASSIVE and
onnxruntime's intra-op pool `session.intra_op.allow_spinning=0`. A spinning worker holds its core while it
waits; when anything else runs on the machine, a step's slowest thread then waits for a core held by a
spinner, and a 2-thread LSTM call took 15x as long as a 1-thread one. OpenMP reads the policy once, when it
loads, so `apply_wait_policy` runs at the CLI's entry, before torch or onnxruntime is imported. A user's own
OMP_WAIT_POLICY wins, and so do `--threads` flags.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

WAIT_ENV = "OMP_WAIT_POLICY"
DEFAULT_WAIT = "PASSIVE"
_applied: dict = {}  # what apply_wait_policy found: {"policy": ..., "source": "default" | "user"}


def affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time the cgroup may use (quota / period), None when unlimited or unknown.
    cgroup v2 reads `cpu.max` ("max 100000" or "200000 100000"), v1 `cpu/cpu.cfs_quota_us` (-1: none)."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def usable_cores(affinity: int | None = None, quota: float | None = None, *, read_quota: bool = True) -> int:
    """Cores this process can keep busy: affinity, capped by the cgroup quota (rounded up, at least 1)."""
    affinity = affinity_cores() if affinity is None else affinity
    if quota is None and read_quota:
        quota = cgroup_quota()
    return max(1, min(affinity, math.ceil(quota)) if quota else affinity)


def apply_wait_policy(env=None) -> dict:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user set it; call before torch/onnxruntime load. Returns
    {"policy", "source"}, remembered for `in_force`."""
    env = os.environ if env is None else env
    if env.get(WAIT_ENV):
        found = {"policy": env[WAIT_ENV].upper(), "source": "user"}
    else:
        env[WAIT_ENV] = DEFAULT_WAIT
        found = {"policy": DEFAULT_WAIT, "source": "default"}
    if env is os.environ:
        _applied.update(found)
    return found


def wait_policy(env=None) -> str:
    """The OpenMP wait policy in force (OpenMP's own default, spinning for a while, is "ACTIVE" here)."""
    env = os.environ if env is None else env
    return (env.get(WAIT_ENV) or "ACTIVE").upper()


def spinning(env=None) -> bool:
    """Whether onnxruntime's idle intra-op threads may spin: only under an explicit ACTIVE policy."""
    return wait_policy(env) == "ACTIVE"


def threads(requested: int | None = None) -> int:
    """Intra-op threads for torch or onnxruntime: `requested` (a flag) if set, else the usable cores."""
    return requested if requested else usable_cores()


def in_force() -> dict:
    """The thread settings this process runs with, for the machine fingerprint."""
    out = {"usable_cores": usable_cores(), "default_threads": threads(), "omp_wait_policy": wait_policy(),
           "policy_source": _applied.get("source", "user" if os.environ.get(WAIT_ENV) else "unset"),
           "ort_spinning": spinning()}
    if os.environ.get("OMP_NUM_THREADS"):
        out["omp_num_threads"] = os.environ["OMP_NUM_THREADS"]
    if "torch" in sys.modules:  # never imported here: a deploy install has no torch
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out
