"""Atomic artifact writes: a reader never sees a half-written file.

`atomic_path(target)` yields a temp path beside the target and renames it over the target when the block ends
without error. Beyond that:
- the artifact gets the mode `open()` gives a new file (0o666 & ~umask), not mkstemp's 0600;
- a failure (full disk, unwritable folder) raises ArtifactWriteError, one line naming the target and the OS
  reason, and leaves the old target and the folder as they were;
- a writer killed mid-write leaves its temp file behind; the next write to the same target removes it.

Temp names are `.{target}.{pid}-{host}.{random}.tmp`, where `host` keys the PID namespace (hostname and
/proc/self/ns/pid). A temp file of this namespace is stale exactly when its PID is not running: the PID is in
the name from the moment the file exists, so a live writer's file is never taken (a reused PID only keeps a
stale file longer). PIDs of another host or container mean nothing here, so their files (and temp files of the
old `.{target}.{random}.tmp` form) are removed only when no writer holds their lock (every writer holds a flock
on its temp file until the rename) and nothing has touched them for a day.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks; temp files of other hosts are then judged by age alone
    fcntl = None

FOREIGN_STALE_SECONDS = 24 * 3600
_OURS = re.compile(r"(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.[a-z0-9_]+\.tmp")
_OLD_FORM = re.compile(r"[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's 8 random characters, before PIDs were named


class ArtifactWriteError(OSError):
    """An artifact could not be written. str() is one line: `cannot write PATH: REASON`; errno is the OS's."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        reason = cause.strerror or (str(cause).splitlines() or [type(cause).__name__])[0]
        super().__init__(cause.errno, reason, str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def _read_umask() -> int | None:
    """The umask from /proc/self/status (Linux 4.7+): read without setting it, so no thread ever runs with
    a changed umask."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    mask = _read_umask()
    if mask is None:  # no /proc: os.umask can only be read by setting it; do that once, here
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def current_umask() -> int:
    mask = _read_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def artifact_mode() -> int:
    """The permission bits open() would give a new file now."""
    return 0o666 & ~current_umask()


def host_key() -> str:
    """8 hex digits naming this host's PID namespace: PIDs in temp names are judged only under the same key."""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return hashlib.sha256(f"{socket.gethostname()}:{ns}".encode()).hexdigest()[:8]


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # PermissionError: it runs under another user
    return True


def _unlocked(path: Path) -> bool:
    """True if no process holds the writer's flock on `path` (probing takes the lock only for an instant)."""
    if fcntl is None:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _is_stale(tmp: Path, suffix: str, host: str) -> bool:
    ours = _OURS.fullmatch(suffix)
    if ours and ours["host"] == host:
        return not _pid_running(int(ours["pid"]))
    if not (ours or _OLD_FORM.fullmatch(suffix)):
        return False  # not a temp file of ours
    try:
        idle = time.time() - tmp.stat().st_mtime
    except OSError:
        return False
    return idle > FOREIGN_STALE_SECONDS and _unlocked(tmp)


def stale_temps(target: str | os.PathLike) -> list[Path]:
    """Temp files beside `target` left by writers of it that are no longer running."""
    target = Path(target)
    prefix, host = f".{target.name}.", host_key()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    return [Path(e.path) for e in entries
            if e.name.startswith(prefix) and _is_stale(Path(e.path), e.name[len(prefix):], host)]


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove what stale_temps(target) finds; return what was removed."""
    removed = []
    for tmp in stale_temps(target):
        with contextlib.suppress(OSError):  # another writer may have swept it first
            tmp.unlink()
            removed.append(tmp)
    return removed


def _missing_dirs(folder: Path) -> list[Path]:
    """`folder` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file sits where the folder should be: say so, not "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder)) from None


def _cleanup(tmp: Path | None, made: list[Path]) -> None:
    with contextlib.suppress(OSError):
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        for folder in made:
            folder.rmdir()


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some filesystems cannot open or sync a folder, which is no error."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside `path`; on success give it the umask's mode and rename it over `path`, on
    error remove it (and any folder made for it) and raise; an OSError becomes ArtifactWriteError."""
    path = Path(path)
    made = _missing_dirs(path.parent)
    try:
        _make_folder(path.parent)
        remove_stale_temps(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-{host_key()}.", suffix=".tmp",
                                    dir=path.parent)
    except OSError as exc:
        _cleanup(None, made)
        raise ArtifactWriteError(path, exc) from exc
    tmp = Path(name)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until the rename: other hosts' cleaners leave the file alone
        yield tmp
        os.chmod(tmp, artifact_mode())
        os.fsync(fd)  # a full disk that only shows at writeback must fail here, before the old file is gone
        os.replace(tmp, path)
    except BaseException as exc:
        _cleanup(tmp, made)
        if isinstance(exc, OSError) and not isinstance(exc, ArtifactWriteError):
            raise ArtifactWriteError(path, exc) from exc
        raise
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the folder `new` (built beside `target`, on its file system) to `target`. An old `target` is moved
    aside first and put back if the rename fails, so a reader finds the old folder or the new one, never half of
    either (for a moment, between the two renames, none). Raises the OSError of a failed rename."""
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
