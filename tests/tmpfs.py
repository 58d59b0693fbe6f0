"""A real full disk for tests: a tiny tmpfs in a private mount namespace (root, or user namespaces)."""
from __future__ import annotations

import shutil
import subprocess


def private_tmpfs() -> list[str] | None:
    """The command prefix (`unshare -rm`) under which `mount -t tmpfs` works, or None where it cannot."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return [unshare, "-rm"] if probe.returncode == 0 else None
