"""Subprocess helpers: every external command of the lab goes through here, so errors
carry the command line and its stderr, and nothing runs in the root netns by accident;
and the one poll loop of the lab, the tests and bench."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence


class LabError(RuntimeError):
    """A lab step failed; the message says which one and why."""


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run CMD, capture text output; raise LabError with stderr when CHECK and it fails."""
    try:
        proc = subprocess.run(
            list(cmd), input=input, capture_output=True, text=True, timeout=timeout, env=env,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"{shlex.join(cmd)} -> exit {proc.returncode}: {detail}")
    return proc


def wait_for(pred, timeout: float = 30, interval: float = 0.05):
    """Poll PRED until it returns something true or TIMEOUT passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def progress(msg: str) -> None:
    """One progress line for long steps (stderr, flushed, so it shows under pytest -s too)."""
    print(f"[lab] {msg}", file=sys.stderr, flush=True)
