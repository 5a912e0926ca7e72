"""The vzlibvirt resident agent inside the lab: same network *and* mount namespace as the
lab's libvirtd (so it sees the lab's /sys and netlink, exactly what the hooks see), its
socket in the lab dir (so lab hooks never talk to an agent of the machine itself)."""

from __future__ import annotations

import contextlib
import os

from . import daemon, procs
from .resident import Resident
from .runner import LIBVIRT_ENV, VzCli
from .settings import LabPaths
from .sh import LabError


def socket_path(paths: LabPaths):
    return paths.root / "agent.sock"


def pidfile(paths: LabPaths):
    return paths.root / "agent.pid"


def cli(paths: LabPaths, python: str) -> VzCli:
    """`vzlibvirt` as libvirtd's own children run it: in the daemon's namespaces, with
    libvirt's environment and the lab config."""
    anchor = daemon.read_pid(paths, "virtlogd")
    if anchor is None:
        raise LabError("the lab's daemons are not running")
    return VzCli(paths.config, enter=("nsenter", "-t", str(anchor), "-m", "-n"),
                 base_env=LIBVIRT_ENV, python=python)


def running(paths: LabPaths) -> int | None:
    try:
        pid = int(pidfile(paths).read_text())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") and procs.cmdline(pid) else None


def start(paths: LabPaths, python: str, timeout: float = 15) -> int:
    agent = Resident.start(cli(paths, python), "agent", log=paths.agent_log,
                           sock=socket_path(paths), timeout=timeout, new_session=True)
    pidfile(paths).write_text(str(agent.pid))
    return agent.pid


def stop(paths: LabPaths) -> None:
    """By pid file, so any process (a later `lab down`) can stop it."""
    pid = running(paths)
    if pid is not None:
        procs.kill_all({pid})
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reap it when this process started it
    pidfile(paths).unlink(missing_ok=True)
