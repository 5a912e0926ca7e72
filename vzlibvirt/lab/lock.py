"""One lab per machine: its namespace names and directories are fixed, so two users (two
test sessions, a test session and a `lab demo`) would tear each other's lab down. They
take turns through an flock on the image cache directory, which outlives every lab, so
the lock leaves no file behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from .settings import LabPaths
from .sh import progress

HELD_ENV = "VZLAB_LOCK_HELD"  # set for children of a holder, so they do not wait on it


@contextlib.contextmanager
def lab_lock(paths: LabPaths) -> Iterator[None]:
    if os.environ.get(HELD_ENV) == "1":
        yield
        return
    paths.cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("the lab is in use by another process: waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.environ[HELD_ENV] = "1"
        try:
            yield
        finally:
            os.environ.pop(HELD_ENV, None)
    finally:
        os.close(fd)
