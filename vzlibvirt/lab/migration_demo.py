"""`vzlibvirt lab demo --hosts 2`: a routed VM (IPv4 + IPv6) live-migrated from host A to
host B and back while Computer X pings it every 10 ms; both hosts' `arp -n` / `route -n`
before and after each move, the packets lost and QEMU's own downtime."""

from __future__ import annotations

import time

from . import tables
from .guests import MIGRATING_VMS, Guest
from .lab import Lab
from .pingloop import Loss, PingLoop
from .settings import X_IP4
from .sh import LabError, wait_for
from .twohosts import Move, TwoHostLab


def _say(text: str = "") -> None:
    print(text, flush=True)


def show_hosts(labs: TwoHostLab, g: Guest) -> None:
    for host in labs.hosts:
        run = lambda cmd, h=host: h.in_host(cmd).stdout  # noqa: E731
        name = host.host.hostname
        _say(f"\n-- host {name}: # arp -n")
        _say(tables.arp_n(run))
        _say(f"-- host {name}: # route -n")
        _say(tables.route_n(run))
        v6 = [ln for ln in (run(["ip", "-6", "neigh", "show", "proxy"])
                            + run(["ip", "-6", "route", "show"])).splitlines()
              if any(ip in ln for ip in g.v6)]
        _say(f"-- host {name}: IPv6 proxy entries and routes of {g.name}: "
             + ("; ".join(v6) if v6 else "none"))


def move(labs: TwoHostLab, g: Guest, source: Lab) -> tuple[Move, dict[str, Loss]]:
    """Migrate G off SOURCE while Computer X pings each of its IPs every 10 ms."""
    loops = {ip: PingLoop(labs.lan.lan, ip) for ip in g.ips}
    try:
        time.sleep(0.5)  # the loops get going
        result = labs.migrate(g.name, source)
        time.sleep(1.0)  # the LAN has caught up, or it has not
    finally:
        losses = {ip: loop.stop() for ip, loop in loops.items()}
    return result, losses


def run_demo(labs: TwoHostLab, *, keep: bool = False) -> int:
    labs.up()
    g = MIGRATING_VMS[0]
    ok = True
    try:
        for host in labs.hosts:
            host.undefine(g)
        labs.a.define(g)
        labs.a.start(g)
        if not labs.a.wait_console(g, "VZLAB-READY", 120):
            raise LabError(f"{g.name} did not boot (see {labs.a.console(g)})")
        if not all(wait_for(lambda ip=ip: labs.a.ping_from_x(ip), 30, 0.5) for ip in g.ips):
            raise LabError(f"Computer X cannot reach {g.name} on host A")
        _say(f"\n== {g.name}: routed VM {', '.join(g.ips)} running on host "
             f"{labs.a.host.hostname}; Computer X ({X_IP4}) reaches it")
        show_hosts(labs, g)
        for source in (labs.a, labs.b):
            dest = labs.other(source)
            _say(f"\n== virsh migrate --live --p2p {g.name} "
                 f"{source.host.hostname} -> {dest.host.hostname}, Computer X pinging "
                 "every 10 ms")
            result, losses = move(labs, g, source)
            if not result.ok:
                _say(f"   migration FAILED: {result.error}")
                ok = False
                break
            _say(f"   migration {result.seconds:.2f} s, QEMU downtime "
                 f"{result.downtime_ms} ms")
            for ip, loss in losses.items():
                _say(f"   ping {ip}: {loss.describe()}")
                ok &= loss.received > 0 and loss.lost_ms <= (result.downtime_ms or 0) + 100
            show_hosts(labs, g)
    finally:
        for host in labs.hosts:
            host.undefine(g)
        if not keep:
            labs.down()
    _say("\nDEMO " + ("PASSED: the LAN followed the VM both ways within QEMU's downtime "
                      "+ 100 ms" if ok else "FAILED"))
    return 0 if ok else 1
