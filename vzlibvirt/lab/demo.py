"""`vzlibvirt lab demo`: the seed's four figures on the lab's real libvirtd, shown the
seed's way: host-routed containers (5.2.1.1) and VMs (5.2.2.2), bridged containers
(5.2.1.2) and VMs (5.2.2.1) on br0, which `lab up` made over the uplink."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from . import guests, tables
from .lab import Lab
from .settings import BRIDGE, HOST_NETNS, LAN_DEV, UPLINK, X_IP4


@dataclass
class Row:
    guest: guests.Guest
    host_dev: str = "-"
    start_s: float = 0.0
    reachable: bool = False
    rtt_ms: float | None = None


def _say(text: str = "") -> None:
    print(text, flush=True)


def demo_guests(vms: bool = True) -> list[guests.Guest]:
    """Routed containers, bridged containers, routed VMs, bridged VMs (the seed's order)."""
    chosen = list(guests.SEED_CONTAINERS) + list(guests.SEED_BRIDGED_CONTAINERS)
    if vms:
        chosen += list(guests.SEED_VMS) + list(guests.SEED_BRIDGED_VMS)
    return chosen


def _kind(g: guests.Guest) -> str:
    return "container" if g.kind == "ct" else "VM"


def run_demo(lab: Lab, *, keep: bool = False, vms: bool = True) -> int:
    lab.up()
    rows = [Row(g) for g in demo_guests(vms)]
    host = lambda cmd: lab.in_host(cmd).stdout  # noqa: E731
    lan = lambda cmd: lab.in_lan(cmd).stdout  # noqa: E731
    try:
        _say(f"\n== starting {len(rows)} guests on the lab host ({HOST_NETNS}): host-routed "
             f"ones behind the host, bridged ones on {BRIDGE} over {UPLINK}")
        for row in rows:
            g = row.guest
            lab.undefine(g)
            lab.define(g)
            t0 = time.monotonic()
            lab.start(g)
            row.start_s = time.monotonic() - t0
            row.host_dev = lab.host_dev(g) or "?"
            inside = "eth0" if g.kind == "vm" else ("venet0" if g.mode == "routed"
                                                     else "netif1")
            _say(f"   {g.name}: {g.mode} {_kind(g)}, {inside} {', '.join(g.ips)} -> host "
                 f"device {row.host_dev} (virsh start {row.start_s:.2f}s)")
        for row in rows:
            if row.guest.kind == "vm" and not lab.wait_console(row.guest, "VZLAB-READY", 90):
                _say(f"   {row.guest.name}: guest did not report ready (see its console log)")

        _say(f"\n== lab host: # arp -n   (MP = routed guests' proxy entries; on {BRIDGE}, "
             f"since {BRIDGE} holds {UPLINK} here: the seed's routed host has no bridge)")
        _say(tables.arp_n(host))
        _say("\n== lab host: # route -n   (one /32 per routed guest, via its own device)")
        _say(tables.route_n(host))
        _say(f"\n== lab host: ports of {BRIDGE}   (seed: veth/vme adapters bridged with "
             f"{UPLINK} through {BRIDGE})")
        _say(bridge_ports(host, rows))

        _say(f"\n== Computer X ({X_IP4}, on the LAN behind {UPLINK}) pings every guest")
        # earlier experiments in this lab may have left X a stale MAC for a reused IP;
        # a LAN host would wait out its neighbour entry, the demo starts X afresh
        lab.in_lan(["ip", "neigh", "flush", "all"], check=False)
        for row in rows:
            row.reachable, row.rtt_ms = _ping(lab, row.guest.ips[0])
            _say(f"   ping {row.guest.ips[0]} ({row.guest.name}): "
                 f"{'ok' if row.reachable else 'NO ANSWER'}")
        _say("\n== Computer X: # arp -n   (bridged guests answer with their own MAC, "
             "routed ones through the host's)")
        _say(x_neighbours(lan, host, rows))

        _say("\n== summary")
        _say(tables.format_table(
            ("guest", "type", "mode", "IPs", "host device", "reachable", "start", "ping"),
            [(r.guest.name, _kind(r.guest), r.guest.mode, ",".join(r.guest.ips), r.host_dev,
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
    _say(f"\n== lab host after stop: ports of {BRIDGE} (only the uplink left)")
    _say(bridge_ports(host, []))
    if not keep:
        lab.down()
    ok = all(r.reachable for r in rows)
    _say("\nDEMO " + ("PASSED: every guest reachable from Computer X" if ok
                      else "FAILED: some guest was not reachable"))
    return 0 if ok else 1


def bridge_ports(host: tables.Runner, rows: list[Row]) -> str:
    """br0's ports, each named by what it carries (the uplink or a guest's adapter)."""
    owner = {r.host_dev: r.guest for r in rows}
    lines = []
    for link in json.loads(host(["ip", "-j", "link", "show", "master", BRIDGE]) or "[]"):
        name = link["ifname"]
        g = owner.get(name)
        what = (f"{g.name} {'eth0' if g.kind == 'vm' else 'netif1'} "
                f"({g.ips[0]}, MAC {g.mac})" if g else
                "physical uplink (to Computer X)" if name == UPLINK else "?")
        lines.append((name, link.get("operstate", "?"), what))
    return tables.format_table(("port", "state", "carries"), lines)


def x_neighbours(lan: tables.Runner, host: tables.Runner, rows: list[Row]) -> str:
    """Computer X's neighbour table, each MAC named by its owner."""
    macs = {r.guest.mac.lower(): r.guest.name for r in rows}
    br = json.loads(host(["ip", "-j", "link", "show", BRIDGE]))[0]["address"]
    macs[br.lower()] = f"lab host ({BRIDGE})"
    wanted = {r.guest.ips[0] for r in rows}
    out = []
    for n in json.loads(lan(["ip", "-j", "-4", "neigh", "show", "dev", LAN_DEV]) or "[]"):
        if n.get("dst") in wanted and n.get("lladdr"):
            out.append((n["dst"], n["lladdr"], LAN_DEV, macs.get(n["lladdr"].lower(), "?")))
    out.sort(key=lambda r: tuple(int(x) for x in r[0].split(".")))
    return tables.format_table(("Address", "HWaddress", "Iface", "MAC of"), out)


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
