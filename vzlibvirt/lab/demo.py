"""`vzlibvirt lab demo`: the seed's host-routed setups (section 5.2.1.1: three routed
containers; 5.2.2.2: two routed VMs) on the lab's real libvirtd, shown the seed's way."""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import guests, tables
from .lab import Lab
from .settings import HOST_NETNS, UPLINK, X_IP4


@dataclass
class Row:
    guest: guests.Guest
    host_dev: str = "-"
    start_s: float = 0.0
    reachable: bool = False
    rtt_ms: float | None = None


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(lab: Lab, *, keep: bool = False, vms: bool = True) -> int:
    lab.up()
    chosen = list(guests.SEED_CONTAINERS) + (list(guests.SEED_VMS) if vms else [])
    rows = [Row(g) for g in chosen]
    host = lambda cmd: lab.in_host(cmd).stdout  # noqa: E731
    try:
        _say(f"\n== starting {len(rows)} host-routed guests on the lab host ({HOST_NETNS})")
        for row in rows:
            g = row.guest
            lab.undefine(g)
            lab.define(g)
            t0 = time.monotonic()
            lab.start(g)
            row.start_s = time.monotonic() - t0
            row.host_dev = lab.host_dev(g) or "?"
            kind = "container (LXC)" if g.kind == "ct" else "VM (QEMU)"
            _say(f"   {g.name}: {kind} {', '.join(g.ips)} -> host device {row.host_dev}"
                 f" (virsh start {row.start_s:.2f}s)")
        for row in rows:
            if row.guest.kind == "vm" and not lab.wait_console(row.guest, "VZLAB-READY", 90):
                _say(f"   {row.guest.name}: guest did not report ready (see its console log)")

        _say("\n== lab host: # arp -n")
        _say(tables.arp_n(host))
        _say("\n== lab host: # route -n")
        _say(tables.route_n(host))

        _say(f"\n== Computer X ({X_IP4}, on the LAN behind {UPLINK}) pings every guest")
        for row in rows:
            row.reachable, row.rtt_ms = _ping(lab, row.guest.ips[0])
            _say(f"   ping {row.guest.ips[0]}: {'ok' if row.reachable else 'NO ANSWER'}")

        _say("\n== summary")
        _say(tables.format_table(
            ("guest", "mode", "IPs", "host device", "reachable", "start", "ping"),
            [(r.guest.name, r.guest.mode, ",".join(r.guest.ips), r.host_dev,
              "yes" if r.reachable else "NO", f"{r.start_s:.2f}s",
              f"{r.rtt_ms:.1f}ms" if r.rtt_ms is not None else "-") for r in rows],
        ))
    finally:
        _say("\n== stopping every guest")
        for row in rows:
            lab.undefine(row.guest)
    _say("\n== lab host after stop: # arp -n (no MP entries left)")
    _say(tables.arp_n(host))
    _say("\n== lab host after stop: # route -n (no guest routes left)")
    _say(tables.route_n(host))
    if not keep:
        lab.down()
    ok = all(r.reachable for r in rows)
    _say("\nDEMO " + ("PASSED: every guest reachable from Computer X" if ok
                      else "FAILED: some guest was not reachable"))
    return 0 if ok else 1


def _ping(lab: Lab, ip: str) -> tuple[bool, float | None]:
    """Up to 10 one-second tries (a VM may still be booting); the RTT of the answer."""
    for _ in range(10):
        out = lab.in_lan(["ping", "-c", "1", "-W", "1", "-n", ip], check=False)
        if out.returncode == 0:
            for word in out.stdout.split():
                if word.startswith("time="):
                    return True, float(word[5:])
            return True, None
    return False, None
