"""atomic_path: the umask's mode, stale temp files of dead writers swept (live ones kept), one-line errors that
leave the old target and the folder as they were."""
import errno
import fcntl
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from lstm_onnx.core import fileio
from lstm_onnx.core.fileio import ArtifactWriteError, atomic_path, host_key, remove_stale_temps
from tests.tmpfs import private_tmpfs


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _with_umask(mask: int, fn):
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifact_mode_follows_the_umask(tmp_path, mask, expected):
    def write():
        assert fileio.current_umask() == mask  # read from /proc, never by setting it
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"new")
        (tmp_path / "plain").write_bytes(b"x")  # what open() gives a new file under this umask

    _with_umask(mask, write)
    assert _mode(tmp_path / "model.onnx") == expected == _mode(tmp_path / "plain")


def test_overwrite_takes_the_umask_not_the_old_mode(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)  # what every artifact got before, from mkstemp
    _with_umask(0o022, lambda: _write(target, b"new"))
    assert _mode(target) == 0o644 and target.read_bytes() == b"new"


def _write(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _temp_name(target, pid: int, host: str | None = None) -> str:
    return f".{target.name}.{pid}-{host or host_key()}.abcd_123.tmp"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the PID runs no more
    return proc.pid


def test_temp_name_carries_the_writer(tmp_path):
    target = tmp_path / "model.pt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".model.pt.{os.getpid()}-{host_key()}.")
        assert tmp.name.endswith(".tmp") and _mode(tmp) == 0o600  # private while half-written
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_next_write_removes_a_dead_writers_temp_and_keeps_a_live_ones(tmp_path):
    target = tmp_path / "model.pt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / _temp_name(target, _dead_pid())
        alive = tmp_path / _temp_name(target, live.pid)
        mine = tmp_path / _temp_name(target, os.getpid())
        other_target = tmp_path / _temp_name(tmp_path / "model.pt.state", _dead_pid())
        user_file = tmp_path / ".model.pt.backup.tmp"
        for p in (dead, alive, mine, other_target, user_file):
            p.write_bytes(b"half")
        _write(target, b"new")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(p.name for p in (target, alive, mine, other_target, user_file))
        assert target.read_bytes() == b"new"
    finally:
        live.kill()
        live.wait()


def test_other_namespaces_temps_go_only_when_unlocked_and_a_day_old(tmp_path):
    target = tmp_path / "model.pt"
    day_ago = time.time() - fileio.FOREIGN_STALE_SECONDS - 60
    foreign_old = tmp_path / _temp_name(target, 1, host="0badf00d")
    foreign_fresh = tmp_path / _temp_name(target, 2, host="0badf00d")
    foreign_locked = tmp_path / _temp_name(target, 3, host="0badf00d")
    old_form_old = tmp_path / ".model.pt.k3j4_x9q.tmp"  # mkstemp's name before PIDs were in it
    for p in (foreign_old, foreign_fresh, foreign_locked, old_form_old):
        p.write_bytes(b"half")
    for p in (foreign_old, foreign_locked, old_form_old):
        os.utime(p, (day_ago, day_ago))
    assert host_key() != "0badf00d"
    with open(foreign_locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live writer in another container holds its lock
        removed = remove_stale_temps(target)
    assert sorted(removed) == sorted([foreign_old, old_form_old])
    assert foreign_fresh.exists() and foreign_locked.exists()


def test_a_writer_holds_its_lock_against_other_namespaces(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    day_ago = time.time() - fileio.FOREIGN_STALE_SECONDS - 60
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        os.utime(tmp, (day_ago, day_ago))  # a slow writer, seen from a cleaner in another container
        monkeypatch.setattr(fileio, "host_key", lambda: "0badf00d")
        assert remove_stale_temps(target) == [] and tmp.exists()
        monkeypatch.undo()
    assert target.read_bytes() == b"half"

def test_a_concurrent_live_writer_is_never_swept(tmp_path):
    """A second process sits inside atomic_path while this one writes the same target: its temp file
    survives our write and its rename then lands."""
    target = tmp_path / "model.pt"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from lstm_onnx.core.fileio import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_bytes(b"theirs")
            print(tmp.name, flush=True)
            while not Path({str(go)!r}).exists():
                time.sleep(0.01)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    their_tmp = tmp_path / writer.stdout.readline().strip()
    assert their_tmp.is_file()
    _write(target, b"ours")
    assert their_tmp.read_bytes() == b"theirs" and target.read_bytes() == b"ours"
    go.touch()
    assert writer.wait(timeout=30) == 0
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "model.pt"]


def test_full_disk_keeps_the_old_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ArtifactWriteError) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a write on a full disk raises
    err = info.value
    assert str(err) == f"cannot write {target}: No space left on device"
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC and err.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("where, reason", [
    (lambda d: d / "file" / "x.onnx", "Not a directory"),      # a file where the folder should be
    (lambda d: d / "dir", "Is a directory"),                   # the target itself is a folder
])
def test_unwritable_target_is_one_line(tmp_path, where, reason):
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    target = where(tmp_path)
    with pytest.raises(ArtifactWriteError, match=rf"^cannot write {target}: {reason}$"):
        _write(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "dir").is_dir()


def test_unwritable_folder_is_one_line():
    with pytest.raises(ArtifactWriteError, match=r"^cannot write /proc/nope/x\.onnx: No such file or directory$"):
        _write("/proc/nope/x.onnx", b"new")


def test_failure_removes_the_folders_made_for_it(tmp_path):
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(tmp_path / "a" / "b" / "model.pt") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")  # not an OSError: passes through unchanged
    assert list(tmp_path.iterdir()) == []
    _write(tmp_path / "a" / "b" / "model.pt", b"new")
    assert (tmp_path / "a" / "b" / "model.pt").read_bytes() == b"new"


def test_real_full_disk_on_a_small_tmpfs(tmp_path):
    runner = private_tmpfs()
    if runner is None:
        pytest.skip("cannot mount a private tmpfs here (unshare -rm)")
    script = textwrap.dedent("""
        import os, sys
        from lstm_onnx.core.fileio import ArtifactWriteError, atomic_path
        d = sys.argv[1]
        target = os.path.join(d, "model.onnx")
        with open(target, "wb") as fh:
            fh.write(b"old")
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(os.urandom(1 << 20))  # 1 MiB into 256 KiB
        except ArtifactWriteError as exc:
            print(exc)
        print(open(target, "rb").read().decode(), sorted(os.listdir(d)))
    """)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run([*runner, "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$1" && "$2" -c "$3" "$1"',
                          "sh", str(mnt), sys.executable, script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"cannot write {mnt}/model.onnx: No space left on device",
                                       "old ['model.onnx']"]


def test_replace_folder_swaps_in_the_new_one(tmp_path):
    from lstm_onnx.core.fileio import replace_folder

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "b").write_text("new")
    replace_folder(tmp_path / "new", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left aside
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b"]


def test_replace_folder_puts_the_old_one_back_when_the_rename_fails(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("old")
    real = os.replace

    def failing(src, dst):
        if os.path.basename(src) == "new":
            raise OSError(28, "No space left on device")
        return real(src, dst)

    (tmp_path / "new").mkdir()
    monkeypatch.setattr(fileio.os, "replace", failing)
    with pytest.raises(OSError):
        fileio.replace_folder(tmp_path / "new", tmp_path / "out")
    assert (tmp_path / "out" / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]
