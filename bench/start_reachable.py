#!/usr/bin/env python3
"""Start to reachable: from `virsh start` to Computer X's first ping reply, in the lab.

Guests: a routed container, a routed VM, a bridged container and a bridged VM wired by
vzlibvirt, each with `conflict_probe` on and off; and, as the baseline, libvirt without
vzlibvirt: a container and a VM with a plain `type='bridge'` interface on br0 and no
vzlibvirt metadata. Computer X pings every 10 ms from just before `virsh start`
(bench/first_reply.py; X's neighbour retransmit time set to 10 ms, so X's own ARP
back-off does not quantise the figure). The lab's hook-call logger, which runs before
ours at every call (a shell, five commands), is removed for the run: a host has none,
and a routed guest's `started` would pay it on the way to reachable. Runs alternate
between the guests. Figures are
printed, never asserted. Needs root; takes the lab lock (and the lab down and up).

usage: python bench/start_reachable.py [--runs 3] [--no-vms]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.benchlab import define, guest_xml, lab_session, plain  # noqa: E402
from bench.benchlib import load_text, med, runs_text  # noqa: E402
from vzlibvirt.lab.guests import Guest  # noqa: E402
from vzlibvirt.lab.lab import PROBE_NAME, Lab  # noqa: E402
from vzlibvirt.lab.settings import BRIDGE, LAN_DEV, LAN_NETNS  # noqa: E402


@dataclass(frozen=True)
class Kind:
    label: str
    guest: Guest


KINDS = (
    Kind("routed container", Guest("sr-ct", "ct", "52:54:00:5e:00:41", ("198.51.100.141",))),
    Kind("routed VM", Guest("sr-vm", "vm", "52:54:00:5e:00:42", ("198.51.100.142",))),
    Kind("bridged container", Guest("sr-bct", "ct", "52:54:00:5e:00:43", ("198.51.100.143",),
                                    mode="bridged")),
    Kind("bridged VM", Guest("sr-bvm", "vm", "52:54:00:5e:00:44", ("198.51.100.144",),
                             mode="bridged", source_bridge=BRIDGE)),
    Kind("plain bridge container (libvirt only)",
         plain(Guest("sr-pct", "ct", "52:54:00:5e:00:45", ("198.51.100.145",),
                     mode="bridged"))),
    Kind("plain bridge VM (libvirt only)",
         plain(Guest("sr-pvm", "vm", "52:54:00:5e:00:46", ("198.51.100.146",),
                     mode="bridged"))),
)


def set_probe(lab: Lab, on: bool) -> None:
    """conflict_probe in the lab's host config (hooks and the agent read it per call)."""
    text = re.sub(r"\nconflict_probe = \w+\n", "\n", lab.paths.config.read_text())
    text = text.replace("[routed]\n", f"[routed]\nconflict_probe = {str(on).lower()}\n", 1)
    lab.paths.config.write_text(text)


def trial(lab: Lab, k: Kind) -> tuple[float, float]:
    """(virsh start seconds, seconds until X's first ping reply)."""
    ip = k.guest.ips[0]
    lab.in_lan(["ip", "neigh", "flush", "all"], check=False)
    pinger = subprocess.Popen(["ip", "netns", "exec", LAN_NETNS, sys.executable,
                               str(Path(__file__).parent / "first_reply.py"), ip],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.1)  # it is sending
    t0 = time.monotonic()
    try:
        lab.start(k.guest)
        started = time.monotonic() - t0
        out, _ = pinger.communicate(timeout=125)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
        lab.destroy(k.guest, check=False)
    answered = float(out) if pinger.returncode == 0 else float("nan")
    return started, answered - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-vms", action="store_true")
    args = ap.parse_args()
    kinds = [k for k in KINDS if not (args.no_vms and k.guest.kind == "vm")]
    res: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    with lab_session() as lab:
        for driver in ("lxc", "qemu"):  # the lab's call logger: no host runs it
            (lab.paths.hooks / f"{driver}.d" / PROBE_NAME).unlink()
        for key, value in (("retrans_time_ms", "10"), ("mcast_solicit", "10")):
            lab.in_lan(["sysctl", "-qw", f"net.ipv4.neigh.{LAN_DEV}.{key}={value}"])
        for k in kinds:
            define(lab, k.guest, guest_xml(lab, k.guest))
        for probe in (True, False):
            set_probe(lab, probe)
            for _ in range(args.runs):
                for k in kinds:
                    res.setdefault((k.label, probe), []).append(trial(lab, k))
        for k in kinds:
            lab.undefine(k.guest)
        load = load_text()

    print(f"\nstart to reachable: virsh start -> Computer X's first ping reply "
          f"(median of {args.runs} alternating runs, s; {load} at the end)")
    print(f"{'guest':40} {'probe':>5} {'virsh start':>12} {'reachable':>10}   runs")
    for k in kinds:
        for probe in (True, False):
            rows = res[(k.label, probe)]
            st, re_ = [r[0] for r in rows], [r[1] for r in rows]
            print(f"{k.label:40} {'on' if probe else 'off':>5} {med(st):12.2f} "
                  f"{med(re_):10.2f}   {runs_text(re_)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
