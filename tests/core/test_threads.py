"""Usable cores (affinity, cgroup v2/v1 quota) and the wait policy."""
import pytest

from lstm_onnx.core import threads


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "250000 100000\n"}, 2.5),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_quota_v2_and_v1(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cgroup_quota(tmp_path) == quota


@pytest.mark.parametrize("affinity, quota, usable", [(8, None, 8), (8, 2.5, 3), (8, 0.5, 1), (2, 16.0, 2)])
def test_usable_cores_is_affinity_capped_by_quota(affinity, quota, usable):
    assert threads.usable_cores(affinity, quota, read_quota=False) == usable


def test_wait_policy_is_passive_unless_the_user_chose():
    env = {}
    assert threads.apply_wait_policy(env) == {"policy": "PASSIVE", "source": "default"}
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and not threads.spinning(env)
    env = {"OMP_WAIT_POLICY": "active"}
    assert threads.apply_wait_policy(env) == {"policy": "ACTIVE", "source": "user"}
    assert env["OMP_WAIT_POLICY"] == "active" and threads.spinning(env)


def test_flags_override_the_default_count(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    assert threads.threads(None) == 3 and threads.threads(0) == 3 and threads.threads(1) == 1


def test_the_cli_sets_the_policy_before_torch_or_onnxruntime_load():
    import subprocess
    import sys

    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); import lstm_onnx.cli.main; "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules, 'onnxruntime' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "False", "False"]
