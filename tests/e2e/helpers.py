"""What the e2e tests read from the lab host: routes, proxy entries, leftovers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vzlibvirt.lab import procs as lab_procs
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.sh import wait_for as _wait_for

LAB_PROCESS_NAMES = ("libvirtd", "virtlogd", "libvirt_lxc", "qemu-system-x86")


def _json(lab: Lab, *args: str) -> list[dict]:
    out = lab.in_host(["ip", "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


def host_routes(lab: Lab) -> dict[str, str]:
    """Host routes (/32, /128) of the lab host: destination -> device."""
    routes = {}
    for fam in ("-4", "-6"):
        for r in _json(lab, fam, "route", "show", "table", "main"):
            dst = r["dst"]
            if "/" not in dst and dst != "default" and not dst.startswith("fe80"):
                routes[dst] = r.get("dev", "")
    return routes


def proxies(lab: Lab) -> set[tuple[str, str]]:
    """(IP, device) of every proxy-neighbour entry on the lab host."""
    out = set()
    for fam in ("-4", "-6"):
        for n in _json(lab, fam, "neigh", "show", "proxy"):
            out.add((n["dst"], n["dev"]))
    return out


def host_addresses(lab: Lab) -> set[tuple[str, str]]:
    return {(a["ifname"], i["local"]) for a in _json(lab, "addr", "show")
            for i in a.get("addr_info", [])}


@dataclass(frozen=True)
class Leftovers:
    """What could outlive the lab on the machine; equal before up and after down."""

    netns: frozenset[str]
    processes: frozenset[int]
    mounts: frozenset[str]
    files: frozenset[str]


def snapshot(lab: Lab) -> Leftovers:
    netns = frozenset(n for n in os.listdir("/run/netns") if n.startswith("vzlab-")) \
        if os.path.isdir("/run/netns") else frozenset()
    procs = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            comm = Path(f"/proc/{p}/comm").read_text().strip()
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(comm.startswith(n[:15]) for n in LAB_PROCESS_NAMES):
            procs.add(int(p))
    # Not ours: other suites' namespaces, and /run/netns itself, which iproute2 turns
    # into a shared mount point the first time any namespace is added on a machine.
    procs |= set(lab_procs.rooted_under(f"{lab.paths.guests}/"))  # orphaned container inits
    mounts = frozenset(m for m in (line.split()[4] for line in Path("/proc/self/mountinfo")
                                   .read_text().splitlines())
                       if m != "/run/netns" and (not m.startswith("/run/netns/")
                                                 or m.startswith("/run/netns/vzlab-")))
    candidates = [str(lab.paths.root), *S.LIBVIRT_DIRS.values(),
                  *(str(c / "machine") for c in Path("/sys/fs/cgroup").glob("*"))]
    files = frozenset(c for c in candidates if os.path.exists(c))
    return Leftovers(netns, frozenset(procs), mounts, files)


def assert_clean(before: Leftovers, after: Leftovers) -> None:
    assert after.netns == before.netns, f"namespaces left: {after.netns - before.netns}"
    new = after.processes - before.processes
    assert not new, f"processes left: {sorted(new)}"
    assert after.mounts == before.mounts, (
        f"mounts differ: +{sorted(after.mounts - before.mounts)} "
        f"-{sorted(before.mounts - after.mounts)}")
    assert after.files == before.files, (
        f"files differ: +{sorted(after.files - before.files)} "
        f"-{sorted(before.files - after.files)}")


def wait_for(pred, timeout: float = 30, interval: float = 0.5):
    """Poll PRED until it returns something true or TIMEOUT passes (lab-paced)."""
    return _wait_for(pred, timeout, interval)
