"""The vzlibvirt resident agent inside the lab: same network *and* mount namespace as the
lab's libvirtd (so it sees the lab's /sys and netlink, exactly what the hooks see), its
socket in the lab dir (so lab hooks never talk to an agent of the machine itself)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

from . import daemon, procs
from .settings import LabPaths
from .sh import LabError


def socket_path(paths: LabPaths):
    return paths.root / "agent.sock"


def pidfile(paths: LabPaths):
    return paths.root / "agent.pid"


def running(paths: LabPaths) -> int | None:
    try:
        pid = int(pidfile(paths).read_text())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") and procs.cmdline(pid) else None


def start(paths: LabPaths, python: str, timeout: float = 15) -> int:
    anchor = daemon.read_pid(paths, "virtlogd")
    if anchor is None:
        raise LabError("cannot start the agent: the lab's daemons are not running")
    env = {"PATH": "/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "VZLIBVIRT_CONFIG": str(paths.config)}
    log = open(paths.lab("log") / "agent.log", "ab")  # noqa: SIM115 (child keeps it)
    try:
        proc = subprocess.Popen(
            ["nsenter", "-t", str(anchor), "-m", "-n", python, "-m", "vzlibvirt", "agent"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True,
        )
    finally:
        log.close()
    pidfile(paths).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket_path(paths).exists():
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = (paths.lab("log") / "agent.log").read_text(errors="replace")[-1500:]
    stop(paths)
    raise LabError(f"the vzlibvirt agent did not come up:\n{tail}")


def stop(paths: LabPaths) -> None:
    pid = running(paths)
    if pid is not None:
        procs.kill_all({pid})
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reap it when this process started it
    pidfile(paths).unlink(missing_ok=True)
