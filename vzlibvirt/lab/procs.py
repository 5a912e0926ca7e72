"""Finding the lab's processes by namespace (never by name): everything whose network or
mount namespace is the lab's, and their descendants (container inits live in their own
namespaces but are children of libvirt_lxc)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def netns_id(name: str) -> str | None:
    """The ns identity ('net:[N]') of a named netns, as /proc/PID/ns/net shows it."""
    try:
        st = os.stat(f"/run/netns/{name}")
    except OSError:
        return None
    return f"net:[{st.st_ino}]"


def netns_of(pid: int) -> str | None:
    """The network namespace identity of PID ('net:[N]'), None when it is gone."""
    return _ns(pid, "net")


def lab_pids(net_ids: set[str], mnt_ids: set[str]) -> set[int]:
    """Pids in any of the given namespaces, plus all their descendants; never our own."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    found = {p for p in pids if _ns(p, "net") in net_ids or _ns(p, "mnt") in mnt_ids}
    parents = {p: _ppid(p) for p in pids}
    changed = True
    while changed:
        extra = {p for p, pp in parents.items() if pp in found and p not in found}
        found |= extra
        changed = bool(extra)
    found.discard(os.getpid())
    return found


def rooted_under(prefix: str) -> dict[int, list[str]]:
    """Container processes whose root mount comes from a directory under PREFIX (the
    lab's guest rootfs dirs), with their cgroup v1 paths. These must be found this way:
    when libvirt_lxc dies first, a container's init is re-parented to PID 1 and lives in
    namespaces of its own, so neither the namespace nor the parentage test sees it."""
    found: dict[int, list[str]] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/mountinfo") as fh:
                roots = [f[3] for f in (ln.split() for ln in fh) if len(f) > 4 and f[4] == "/"]
            cgroups = Path(f"/proc/{p}/cgroup").read_text().splitlines()
        except OSError:
            continue
        if any(r.startswith(prefix) for r in roots):
            found[int(p)] = [ln.split(":", 2)[2] for ln in cgroups if ln.count(":") >= 2]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def kill_all(pids: set[int], timeout: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}
            if not pids:
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def find_by_args(*needles: str) -> list[int]:
    """Pids whose full command line holds every NEEDLE (used to find libvirt_lxc of one
    container, after the namespace filter has narrowed to lab processes)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            cl = cmdline(int(p))
            if all(n in cl.split() for n in needles):
                out.append(int(p))
    return out
