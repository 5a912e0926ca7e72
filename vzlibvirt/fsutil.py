"""Atomic file replacement: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place.

    The temporary name carries the pid, so concurrent writers never share one; nothing
    is fsynced (our files live on /run and only have to survive process crashes).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
