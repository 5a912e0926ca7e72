#!/usr/bin/env python3
"""libvirtd restarts with N real filtered containers running (issue 12, item 1(d)).

The lab's libvirtd runs N LXC containers (static busybox, one shared rootfs), each a
port of br0 with vzlibvirt's filter='mac-ip'. A libvirtd start reconnects to every
running guest and calls its `reconnect` hook before it serves. For each size the bench
times libvirtd restarts (kill; start until both drivers answer):
  ours       the lab's agent follows libvirt's events: the shim ends `reconnect`, and
             the agent reconciles every running guest once libvirtd serves again (the
             time until it logged that is shown too, with the changes it made)
  no agent   the agent stopped: each guest's `reconnect` hook re-applies in a Python of
             its own before libvirtd serves (up to --no-agent-max guests)
  plain      the same N containers as libvirt alone runs them: `type='bridge'` on br0,
             no vzlibvirt metadata (our shims are installed and end every call)
Figures are printed, never asserted. Needs root; takes the lab lock; ~10 min at 1,000.

usage: python bench/restart_guests.py [--sizes 1,1000] [--restarts 6] [--no-agent-max 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlab import lab_session, restart_time  # noqa: E402
from bench.benchlib import load_text, med  # noqa: E402
from vzlibvirt.agent import reconciles  # noqa: E402
from vzlibvirt.lab import images  # noqa: E402
from vzlibvirt.lab.domxml import bridged, domain_xml, lxc_boot  # noqa: E402
from vzlibvirt.lab.lab import Lab  # noqa: E402
from vzlibvirt.lab.settings import BRIDGE  # noqa: E402


def name(i: int) -> str:
    return f"rg{i}"


def guest_xml(i: int, rootfs: Path, ours: bool) -> str:
    """Container I on br0: filtered by us (we plug it), or plain (libvirt plugs it)."""
    mac = f"52:54:00:f1:{i >> 8:02x}:{i & 255:02x}"
    if ours:
        iface = bridged(mac, ips=[f"2001:db8:f1::{i + 1:x}"], filter="mac-ip")
    else:
        iface = {**bridged(mac, type="bridge", source_bridge=BRIDGE), "vz": None}
    # one UUID per container whichever way it runs (domain_xml's `hook` form has it)
    return domain_xml(name(i), interfaces=[iface], boot=lxc_boot(rootfs)).decode()


class Guests:
    """The N containers, through one libvirt connection (virsh per guest costs more)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rootfs = lab.paths.guests / "restart-rootfs"
        if not self.rootfs.exists():
            images.container_rootfs(self.rootfs)
        self.ours: dict[int, bool] = {}  # running guests: filtered by us or plain
        self.connect()

    def connect(self) -> None:
        import libvirt

        self.conn = libvirt.open(self.lab.paths.uri("lxc"))

    def run(self, n: int, ours: bool) -> float:
        """Guests 0..N-1 running, each filtered by us or plain; seconds it took."""
        t0 = time.monotonic()
        for i in range(n):
            if self.ours.get(i) == ours:
                continue
            if i in self.ours:
                self.conn.lookupByName(name(i)).destroy()
            dom = self.conn.defineXML(guest_xml(i, self.rootfs, ours))
            dom.create()
            self.ours[i] = ours
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} of {n} running", file=sys.stderr, flush=True)
        return time.monotonic() - t0

    def remove(self) -> None:
        """Destroy and undefine them through the API (`lab down` takes a virsh each)."""
        self.connect()  # the one before the last restart is gone
        for n, i in enumerate(sorted(self.ours), 1):
            dom = self.conn.lookupByName(name(i))
            if dom.isActive():
                dom.destroy()
            dom.undefine()
            if n % 100 == 0:
                print(f"  {n} of {len(self.ours)} removed", file=sys.stderr, flush=True)
        self.ours.clear()

    def running(self) -> int:
        return self.conn.numOfDomains()


def mem_available() -> int:
    """The machine's MemAvailable, KiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise SystemExit("no MemAvailable in /proc/meminfo")


def reconciled(lab: Lab) -> list[tuple[int, int]]:
    """(domains, changes) of each lxc reconcile the agent logged."""
    return reconciles(lab.paths.agent_log.read_text(), "lxc")


def qemu_caps(lab: Lab) -> dict[str, float]:
    """mtime of each QEMU capabilities cache file: libvirt rewrites them when it probes
    QEMU again at its start, which it does on this VM in about half the starts ("host
    cpuid changed": the two vCPUs report different CPUID data), for ~7.5 s."""
    return {p.name: p.stat().st_mtime
            for p in (lab.paths.lab("cache") / "qemu" / "capabilities").glob("*.xml")}


def restarts(lab: Lab, guests: Guests, n: int, count: int, agent: bool) -> dict:
    out: dict = {"start": [], "stop": [], "reprobed": [], "reconciled": [], "changes": []}
    for _ in range(count):
        before = len(reconciled(lab))
        caps = qemu_caps(lab)
        r = restart_time(lab)
        out["reprobed"].append(qemu_caps(lab) != caps)
        t_ready = time.monotonic()
        guests.connect()
        if guests.running() != n:
            raise SystemExit(f"{guests.running()} guests run after the restart, not {n}")
        out["start"].append(r["start"])
        out["stop"].append(r["stop"])
        if agent:  # until the agent logged its reconcile of the N running containers
            deadline = t_ready + 600
            while len(reconciled(lab)) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            done = reconciled(lab)[before:]
            if not done or done[0][0] != n:
                raise SystemExit(f"the agent did not reconcile {n} containers: {done}")
            out["reconciled"].append(r["start"] + time.monotonic() - t_ready)
            out["changes"].append(done[0][1])
        print(f"  restart: {r} reprobed QEMU: {out['reprobed'][-1]} "
              f"{out['reconciled'][-1:] or ''}", file=sys.stderr, flush=True)
    return out


def clean(runs: dict, key: str = "start") -> list[float]:
    """The restarts in which libvirt did not probe QEMU again (all if none was clean)."""
    kept = [v for v, again in zip(runs[key], runs["reprobed"], strict=True) if not again]
    return kept or runs[key]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,1000", help="running containers, comma-separated")
    ap.add_argument("--restarts", type=int, default=6, help="restarts per size and variant")
    ap.add_argument("--no-agent-max", type=int, default=100,
                    help="largest size timed with the agent stopped (~0.1 s per guest)")
    ap.add_argument("--json", help="also write the raw figures to this file")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.sizes.split(",")})
    res: dict = {}
    with lab_session() as lab:
        guests = Guests(lab)
        try:
            measure(lab, guests, sizes, args, res)
        finally:
            guests.remove()
        load = load_text()
    report(res, sizes, args, load)
    if args.json:
        Path(args.json).write_text(json.dumps(res))
    return 0


def measure(lab: Lab, guests: Guests, sizes: list[int], args, res: dict) -> None:
    for n in sizes:
        row = res.setdefault(n, {})
        print(f"[{n}] starting filtered containers", file=sys.stderr, flush=True)
        avail = mem_available()
        row["start_all_s"] = guests.run(n, ours=True)
        row["mem_mb"] = (avail - mem_available()) / 1024
        row["ours"] = restarts(lab, guests, n, args.restarts, agent=True)
        if n <= args.no_agent_max:
            lab.stop_agent()
            try:
                row["no_agent"] = restarts(lab, guests, n, args.restarts, agent=False)
            finally:
                lab.start_agent()
        print(f"[{n}] the same containers plain", file=sys.stderr, flush=True)
        guests.run(n, ours=False)
        row["plain"] = restarts(lab, guests, n, args.restarts, agent=False)
        print(f"[{n}] {json.dumps(row)}", file=sys.stderr, flush=True)


def report(res: dict, sizes: list[int], args, load: str) -> None:
    print(f"\nlibvirtd restart with N running LXC containers on br0 (lab; {load} at the "
          "end): kill, then start until both drivers answer, s; median of the restarts in "
          "which libvirt did not probe QEMU again (clean/all); every run after the bar, "
          "* = QEMU probed again")

    def cell(runs: dict | None) -> str:
        if runs is None:
            return f"{'-':>12}"
        kept = clean(runs)
        return f"{med(kept):>6.2f} {len(kept)}/{len(runs['start'])}".rjust(12)

    def every(runs: dict | None) -> str:
        if runs is None:
            return "-"
        return " ".join(f"{v:.2f}{'*' if again else ''}"
                        for v, again in zip(runs["start"], runs["reprobed"], strict=True))

    print(f"{'N':>6} {'ours':>12} {'plain':>12} {'no agent':>12} {'reconciled':>10}"
          "   | ours ; plain ; no agent")
    for n in sizes:
        row = res[n]
        print(f"{n:>6} {cell(row['ours'])} {cell(row['plain'])} {cell(row.get('no_agent'))} "
              f"{med(clean(row['ours'], 'reconciled')):>10.2f}   | {every(row['ours'])} ; "
              f"{every(row['plain'])} ; {every(row.get('no_agent'))}")
    for n in sizes:
        o, p = med(clean(res[n]["ours"])), med(clean(res[n]["plain"]))
        print(f"{n:>6}: ours / plain {o / p:.2f}x ({o - p:+.2f} s); the agent's reconcile "
              f"made {res[n]['ours']['changes']} changes; starting the filtered containers "
              f"took {res[n]['start_all_s']:.1f} s, {res[n]['mem_mb']:.0f} MB")
    lo, hi = sizes[0], sizes[-1]
    if hi != lo:
        o = med(clean(res[hi]["ours"])) - med(clean(res[lo]["ours"]))
        p = med(clean(res[hi]["plain"])) - med(clean(res[lo]["plain"]))
        print(f"from {lo} to {hi} guests the start grew {o:+.2f} s with ours, "
              f"{p:+.2f} s with plain libvirt")


if __name__ == "__main__":
    sys.exit(main())
