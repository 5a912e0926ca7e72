"""`vzlibvirt lab demo --hosts 2 --bgp`: the routed fabric at work. A routed container
starts on host A and a routed VM on host B; the router's `vtysh -c 'show ip bgp'` fills
as each starts, Computer Y (behind the router) pings both, the hosts show no proxy entry,
then both stop and the router's table empties."""

from __future__ import annotations

import time

from . import settings as S
from .guests import FABRIC_CONTAINER, FABRIC_VM, Guest
from .lab import Lab
from .sh import LabError, wait_for
from .twohosts import TwoHostLab


def _say(text: str = "") -> None:
    print(text, flush=True)


def _show_router(labs: TwoHostLab, title: str) -> None:
    _say(f"\n-- router {S.ROUTER.netns}: # vtysh -c 'show ip bgp' -c 'show bgp ipv6'"
         f"   ({title})")
    _say(labs.fabric.show_bgp().rstrip() or "(empty)")


def _proxies(host: Lab) -> str:
    return "".join(host.in_host(["ip", *fam, "neigh", "show", "proxy"]).stdout
                   for fam in (["-4"], ["-6"])).strip()


def run_demo(labs: TwoHostLab, *, keep: bool = False) -> int:
    labs.up()
    placed: list[tuple[Lab, Guest]] = [(labs.a, FABRIC_CONTAINER), (labs.b, FABRIC_VM)]
    ok = True
    try:
        _show_router(labs, "no guest running")
        for host, g in placed:
            for h in labs.hosts:
                h.undefine(g)
            host.define(g)
            t0 = time.monotonic()
            host.start(g)
            started = time.monotonic() - t0
            learned = wait_for(lambda g=g: set(g.ips) <= set(labs.fabric.routes()), 60, 0.02)
            took = time.monotonic() - t0
            _say(f"\n== {g.name} ({'container' if g.kind == 'ct' else 'VM'}, "
                 f"{', '.join(g.ips)}) started on host {host.host.hostname}: virsh start "
                 f"{started:.2f} s, on the router {took:.2f} s after the start began"
                 if learned else f"\n== {g.name}: the router did not learn {g.ips}")
            ok &= bool(learned)
            _show_router(labs, f"after {g.name} started")
        for host, g in placed:
            if g.kind == "vm" and not host.wait_console(g, "VZLAB-READY", 120):
                raise LabError(f"{g.name} did not boot (see {host.console(g)})")
            routes = labs.fabric.routes()
            for ip in g.ips:
                reach = wait_for(lambda ip=ip: labs.fabric.ping_from_y(ip), 30, 0.2)
                hop = routes.get(ip, "-")
                _say(f"   Computer Y ({S.Y_IP4}) -> {g.name} {ip}: "
                     f"{'reachable' if reach else 'UNREACHABLE'}; router next hop {hop} "
                     f"(host {host.host.hostname})")
                ok &= bool(reach) and hop in labs.fabric.next_hops(host)
            proxies = _proxies(host)
            _say(f"   host {host.host.hostname}: proxy entries: {proxies or 'none'}")
            ok &= not proxies
        for host, g in placed:
            t0 = time.monotonic()
            host.destroy(g)
            gone = wait_for(lambda g=g: not set(g.ips) & set(labs.fabric.routes()), 30, 0.02)
            _say(f"\n== {g.name} stopped on host {host.host.hostname}: "
                 + (f"gone from the router {time.monotonic() - t0:.2f} s after the stop began"
                    if gone else "STILL on the router"))
            ok &= bool(gone)
            _show_router(labs, f"after {g.name} stopped")
    finally:
        for _host, g in placed:
            for h in labs.hosts:
                h.undefine(g)
        if not keep:
            labs.down()
    _say("\nDEMO " + ("PASSED: the router learned each guest from its host by BGP, Computer "
                      "Y reached them only that way, and the routes went with the guests"
                      if ok else "FAILED"))
    return 0 if ok else 1
