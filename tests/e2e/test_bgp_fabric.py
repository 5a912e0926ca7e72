"""Issue 11's acceptance on the lab's BGP fabric (`lab up --hosts 2 --bgp`, docs/bgp.md):
two real libvirtds whose hosts have `neighbour_devs = "none"` and run BIRD from
`vzlibvirt routing-config bird`, a real FRR bgpd as the top-of-rack router on their LAN,
Computer Y on a client subnet behind the router. Y reaches a guest only through the
router's BGP-learned /32 (/128): no host answers ARP/NDP for a guest, and the guests'
subnets are routed nowhere else. One test swaps the daemons (FRR from `routing-config frr`
on the hosts, BIRD as the router) so both configurations run on a real lab host; one
live-migrates a routed VM from A to B while Y pings it."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import IN_CI, require_root, two_host_lab
from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.guests import FABRIC_CONTAINER, FABRIC_UNEXPORTED, FABRIC_VM, Guest
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.pingloop import PingLoop
from vzlibvirt.lab.routers import Bird, daemons_missing
from vzlibvirt.lab.twohosts import TwoHostLab

ADMIN = "203.0.113.50"  # an administrator's static /32 on host A, inside --export


@pytest.fixture(scope="module")
def labs():
    """The two-host lab with the BGP fabric, for this module."""
    require_root()
    missing = daemons_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true: the BGP fabric needs real daemons: {missing}")
        pytest.skip(missing)
    with two_host_lab(bgp=True) as two:
        yield two


@pytest.fixture
def fabric(labs):
    """BIRD on the hosts, FRR as the router, unless a test asks otherwise."""
    labs.fabric.use("bird")
    return labs.fabric


def reach_from_y(fabric, g: Guest, timeout: float = 60) -> None:
    for ip in g.ips:
        assert wait_for(lambda ip=ip: fabric.ping_from_y(ip), timeout, 0.2), (
            f"Computer Y cannot reach {g.name} at {ip}; router has {fabric.routes()}")


def assert_routed_by_bgp(labs: TwoHostLab, host: Lab, g: Guest) -> None:
    """The router's routes for G name HOST as next hop; no host has a proxy entry."""
    fabric = labs.fabric
    assert wait_for(lambda: set(g.ips) <= set(fabric.routes()), 30, 0.1), fabric.routes()
    routes = fabric.routes()
    for ip in g.ips:
        assert routes[ip] in fabric.next_hops(host), (ip, routes[ip], host.host.hostname)
        assert routes[ip] not in fabric.next_hops(labs.other(host))
    for h in labs.hosts:
        assert proxies(h) == set(), f"{h.host.hostname} has proxy entries"


def test_y_reaches_a_container_on_a_and_a_vm_on_b_through_the_router(labs, fabric,
                                                                     guests_on):
    guests_on(labs.a, FABRIC_CONTAINER)
    guests_on(labs.b, FABRIC_VM)
    assert labs.b.wait_console(FABRIC_VM, "VZLAB-READY", 180), "the VM did not boot"
    for host, g in ((labs.a, FABRIC_CONTAINER), (labs.b, FABRIC_VM)):
        assert_routed_by_bgp(labs, host, g)
        reach_from_y(fabric, g)
    print(fabric.show_bgp())


def _timed(action, pred, timeout: float = 10) -> tuple[float, float | None]:
    """(seconds ACTION took, seconds from ACTION's start until PRED held, or None)."""
    t0 = time.monotonic()
    action()
    took = time.monotonic() - t0
    return took, (time.monotonic() - t0 if wait_for(pred, timeout, 0.02) else None)


def stop_and_start(fabric, host: Lab, g: Guest) -> tuple[float, float]:
    """Stop G: its routes leave the router within 2 s of it being stopped (`virsh destroy`
    returned; libvirt's own teardown of a container before that is not ours to time).
    Start it: back within 2 s of the start of `virsh start`."""
    took, gone = _timed(lambda: host.destroy(g), lambda: not set(g.ips) & set(fabric.routes()))
    assert gone is not None and gone - took < 2.0, f"withdrawn {gone} s after destroy began"
    print(f"{g.name}: virsh destroy {took:.3f} s, off the router {gone:.3f} s after it began "
          f"({gone - took:.3f} s after the guest was stopped)")
    assert not fabric.ping_from_y(g.ips[0])
    _, back = _timed(lambda: host.start(g), lambda: set(g.ips) <= set(fabric.routes()))
    assert back is not None and back < 2.0, f"announced after {back} s"
    print(f"{g.name}: on the router {back:.3f} s after virsh start began")
    return gone, back


def test_stopped_guest_leaves_the_router_within_2s_and_returns_within_2s(labs, fabric,
                                                                          guests_on):
    g = FABRIC_CONTAINER
    guests_on(labs.a, g)
    assert_routed_by_bgp(labs, labs.a, g)
    stop_and_start(fabric, labs.a, g)
    assert_routed_by_bgp(labs, labs.a, g)
    reach_from_y(fabric, g, timeout=10)


def _not_ours_never_exported(labs: TwoHostLab, guests_on) -> None:
    """An administrator's /32 on host A and a guest outside --export on host B stay off
    the router, while a guest started after them does get there."""
    fabric = labs.fabric
    labs.a.in_host(["ip", "route", "add", f"{ADMIN}/32", "dev", S.BRIDGE])
    try:
        guests_on(labs.b, FABRIC_UNEXPORTED)
        guests_on(labs.a, FABRIC_CONTAINER)
        assert_routed_by_bgp(labs, labs.a, FABRIC_CONTAINER)
        time.sleep(1.0)  # anything the daemons were going to send has gone out by now
        routes = fabric.routes()
        assert ADMIN not in routes and FABRIC_UNEXPORTED.ips[0] not in routes, routes
        assert labs.b.in_host(["ip", "route", "show", FABRIC_UNEXPORTED.ips[0]]).stdout
        assert not fabric.ping_from_y(FABRIC_UNEXPORTED.ips[0])
        reach_from_y(fabric, FABRIC_CONTAINER, timeout=10)
    finally:
        labs.a.in_host(["ip", "route", "del", f"{ADMIN}/32", "dev", S.BRIDGE], check=False)


def test_routes_not_ours_are_never_exported(labs, fabric, guests_on):
    _not_ours_never_exported(labs, guests_on)


def test_frr_on_the_lab_hosts_bird_as_the_router(labs, guests_on):
    """`routing-config frr` on real lab hosts: the same acceptance, daemons swapped."""
    fabric = labs.fabric
    fabric.use("frr")
    try:
        assert fabric.host_daemon() == "frr" and isinstance(fabric.router(), Bird)
        _not_ours_never_exported(labs, guests_on)
        stop_and_start(fabric, labs.a, FABRIC_CONTAINER)
        assert_routed_by_bgp(labs, labs.a, FABRIC_CONTAINER)
    finally:
        fabric.use("bird")


def test_routed_vm_live_migrated_a_to_b_the_router_follows(labs, fabric, guests_on):
    """B announces the VM's routes when it resumes there, A withdraws them; Y's 10 ms
    ping loop loses no more than QEMU's downtime plus 1 s; the router's next hop is B."""
    g = FABRIC_VM
    guests_on(labs.a, g)
    assert labs.a.wait_console(g, "VZLAB-READY", 180), "the VM did not boot"
    assert_routed_by_bgp(labs, labs.a, g)
    reach_from_y(fabric, g)
    loops = {ip: PingLoop(fabric.y, ip) for ip in g.ips}
    try:
        time.sleep(0.5)  # the loops get going
        result = labs.migrate(g.name, labs.a)
        time.sleep(1.5)  # the router has followed, or it has not
    finally:
        losses = {ip: loop.stop() for ip, loop in loops.items()}
    assert result.ok, result.error
    assert result.downtime_ms is not None
    for h in labs.hosts:  # shown when the test fails: who published and withdrew what
        log = h.paths.agent_log
        print(f"--- {h.host.hostname} agent.log (tail)\n"
              + (log.read_text(errors="replace")[-2000:] if log.exists() else "(none)"))
        print(f"--- {h.host.hostname} hook calls of {g.name}: "
              + "; ".join(c for c in h.hook_calls() if f" {g.name} " in c))
    assert_routed_by_bgp(labs, labs.b, g)
    assert not set(g.ips) & set(host_routes(labs.a)), "host A still routes the VM"
    print(fabric.show_bgp())
    for ip, loss in losses.items():
        print(f"A -> B {ip}: {loss.describe()}, QEMU downtime {result.downtime_ms} ms, "
              f"migration {result.seconds:.2f} s")
        assert loss.received > 0
        assert loss.lost_ms <= result.downtime_ms + 1000, (ip, loss.describe(),
                                                          result.downtime_ms)
    reach_from_y(fabric, g, timeout=5)


def test_demo_shows_the_router_table_filling_and_emptying(labs, fabric, capsys):
    """`lab demo --hosts 2 --bgp` on the fabric that is up (keep: the module's lab stays)."""
    from vzlibvirt.lab.bgp_demo import run_demo

    assert run_demo(labs, keep=True) == 0
    out = capsys.readouterr().out
    filled = out.index("after fvm1 started")
    assert "203.0.113.11/32" in out[filled:] and "203.0.113.21/32" in out[filled:]
    emptied = out[out.index("after fvm1 stopped"):]
    assert emptied.count("No BGP prefixes displayed") == 2, emptied
    assert "DEMO PASSED" in out
