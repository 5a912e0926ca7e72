"""`routing-config` proven with real daemons (docs/bgp.md): a host namespace whose routed
guests vzlibvirt wires with `neighbour_devs = "none"` runs BIRD (or FRR) from
`vzlibvirt routing-config`, and peers over its uplink veth with a router namespace running
FRR bgpd (or BIRD). The router must learn exactly the guests' /32 and /128 inside the
exported prefixes, with the host as next hop, drop a stopped guest's route within 2 s and
learn it again within 2 s of its start; an administrator's static /32 and a guest outside
the exports never reach it. Computer Y, behind the router, reaches a guest only through
the BGP-learned route: the host has no proxy entry, and the router no other route to it.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from tests.conftest import require
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.routers import (
    Bird,
    Frr,
    Neighbour,
    daemons_missing,
    learned_routes,
    router_bird_config,
    router_frr_config,
)
from vzlibvirt.lab.settings import UPLINK, X_IP4, X_IP6
from vzlibvirt.lab.sh import wait_for

pytestmark = pytest.mark.netns

HOST_AS, ROUTER_AS = 65001, 65000
HOST4, HOST6 = "198.51.100.2", "2001:db8:100::2"  # the topology's uplink addresses
ROUTER4, ROUTER6 = X_IP4, X_IP6  # the LAN namespace plays the router here
EXPORT4, EXPORT6 = "203.0.113.0/26", "2001:db8:200::/64"
CT1 = ["203.0.113.11", "2001:db8:200::11"]
CT2 = ["203.0.113.12", "2001:db8:200::12"]
OUTSIDE = "203.0.113.100"  # a routed guest outside --export
ADMIN = "203.0.113.50"  # an administrator's static /32 inside --export
WATCHED = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8:200::/48")]
Y_NET4, Y_NET6 = "203.0.113.192/28", "2001:db8:300::/64"  # Computer Y, behind the router
Y4 = "203.0.113.194"  # Computer Y's own address (add_client: the second of its subnet)


@pytest.fixture(params=["bird", "frr"], ids=["bird-on-host", "frr-on-host"])
def host_daemon(request) -> str:
    missing = daemons_missing()
    require(missing is None, missing or "")
    return request.param


def router_routes(topo) -> dict[str, str]:
    """What the router learned through BGP ({destination: next hop})."""
    return learned_routes(topo.lan, WATCHED)


def _link_local(topo, ns: str, dev: str) -> str:
    for a in json.loads(topo.ip(ns, "-j", "-6", "addr", "show", "dev", dev))[0]["addr_info"]:
        if a["scope"] == "link":
            return a["local"]
    raise AssertionError(f"no link-local address on {dev}")


def _add_computer_y(topo) -> str:
    """Computer Y on a client subnet behind the router, and the host's way back: an
    administrator's default route (not a /32: never exported)."""
    y = topo.add_client("y", topo.lan, Y_NET4, Y_NET6)
    topo.ip(topo.host, "route", "add", "default", "via", ROUTER4)
    topo.ip(topo.host, "-6", "route", "add", "default", "via", ROUTER6)
    return y


def _timed(action, pred, timeout: float) -> float | None:
    """Seconds from the start of ACTION (a hook sequence) until PRED holds on the router."""
    t0 = time.monotonic()
    action()
    return time.monotonic() - t0 if wait_for(pred, timeout=timeout, interval=0.02) else None


def test_router_learns_exactly_the_guests(topo, vz, host_daemon):
    vz.write_config('[routed]\nneighbour_devs = "none"\n')
    y = _add_computer_y(topo)
    topo.ip(topo.host, "route", "add", f"{ADMIN}/32", "dev", UPLINK)  # proto boot, metric 0

    r = vz.run("routing-config", host_daemon, "--asn", str(HOST_AS), "--router-id", HOST4,
               "--peer", f"{ROUTER4}:{ROUTER_AS}", "--peer", f"[{ROUTER6}]:{ROUTER_AS}",
               "--export", EXPORT4, "--export", EXPORT6)
    assert r.rc == 0, r.describe()
    hosts = [Neighbour(HOST4, HOST_AS), Neighbour(HOST6, HOST_AS)]
    if host_daemon == "bird":
        host = Bird(topo.host, r.text)
        router = Frr(topo.lan, router_frr_config(ROUTER_AS, ROUTER4, hosts))
    else:
        host = Frr(topo.host, r.text)
        router = Bird(topo.lan, router_bird_config(ROUTER_AS, ROUTER4, hosts))

    guests = {}
    for name, ips in (("ct1", CT1), ("ct2", CT2), ("out", [OUTSIDE])):
        g = topo.add_guest(name, ips)
        guests[name] = (g, domain_xml(name, interfaces=[routed(g.mac, ips, target=g.host_dev,
                                                               native=True)]))
    with router, host:
        for name, (_g, xml) in guests.items():
            vz.start("lxc", name, xml, topo.host)
        nexthops6 = {HOST6, _link_local(topo, topo.host, UPLINK)}
        want = {*CT1, *CT2}
        assert wait_for(lambda: set(router_routes(topo)) == want, timeout=60), (
            f"router has {router_routes(topo)}; {router.logs()} {host.logs()}")
        learned = router_routes(topo)
        for ip in want:
            allowed = nexthops6 if ":" in ip else {HOST4}
            assert learned[ip] in allowed, learned
        # no proxy entry on the host, so the router's /32 is Y's only way to the guest
        assert topo.ip(topo.host, "neigh", "show", "proxy") == ""
        assert topo.ip(topo.host, "-6", "neigh", "show", "proxy") == ""
        for ip in CT1:  # reachability, not timing: a loaded machine may drop the first
            assert wait_for(lambda ip=ip: topo.ping(y, ip, wait=1), timeout=10), ip
        assert topo.ping(guests["ct1"][0].ns, Y4)

        # a guest stopped is withdrawn within 2 s, started again is back within 2 s
        _g2, xml2 = guests["ct2"]

        def hook(op: str) -> None:
            r = vz.hook("lxc", "ct2", op, xml2, ns=topo.host)
            assert r.rc == 0, r.describe()

        # timed from the hook call that changes the host: `stopped` (libvirt's guest is
        # gone then) and `started` (the guest runs), as libvirt makes them
        gone = _timed(lambda: hook("stopped"),
                      lambda: not set(CT2) & set(router_routes(topo)), timeout=10)
        hook("release")
        assert gone is not None and gone < 2.0, f"withdrawal took {gone}"
        assert set(router_routes(topo)) == set(CT1)
        assert not topo.ping(y, CT2[0], wait=1)
        hook("prepare")
        hook("start")
        back = _timed(lambda: hook("started"), lambda: set(router_routes(topo)) == want,
                      timeout=10)
        assert back is not None and back < 2.0, f"announcement took {back}"
        print(f"{host_daemon} on the host: withdrawn {gone:.3f} s after `stopped` began, "
              f"announced {back:.3f} s after `started` began")

        # the administrator's /32 and the guest outside the exports never went out
        assert ADMIN not in router_routes(topo) and OUTSIDE not in router_routes(topo)
        assert topo.route_to(ADMIN) is not None and topo.route_to(OUTSIDE) is not None
        assert not topo.ping(y, OUTSIDE, wait=1)

        for name, (_g, xml) in guests.items():
            vz.stop("lxc", name, xml, topo.host)
        assert wait_for(lambda: router_routes(topo) == {}, timeout=5), router_routes(topo)
