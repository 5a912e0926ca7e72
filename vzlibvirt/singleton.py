"""One process per job and state dir: an flock on a file that names the holder's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    """Another process holds the lock; `pid` is what it wrote (or "?")."""

    def __init__(self, pid: str):
        super().__init__(pid)
        self.pid = pid


def hold(path: Path) -> int:
    """Take the lock at `path` without waiting and write our pid into it; the returned
    fd holds it (close it to let go; the kernel lets go when the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(other) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
