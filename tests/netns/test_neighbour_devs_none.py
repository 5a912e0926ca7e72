"""`[routed] neighbour_devs = "none"` on the real kernel: a routed-fabric host, whose
routing daemon announces the guests' routes (docs/bgp.md), gets the routes with protocol
247 and no proxy entry, no proxy setting on any other device, and no LAN probe."""

from __future__ import annotations

import pytest

from vzlibvirt import contract
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.settings import X_IP4

pytestmark = pytest.mark.netns

IPS = ["203.0.113.11", "2001:db8:200::11"]


def _proxy_anywhere(topo) -> str:
    return (topo.ip(topo.host, "neigh", "show", "proxy")
            + topo.ip(topo.host, "-6", "neigh", "show", "proxy"))


def _sysctl(topo, key: str) -> str:
    return topo.exec(topo.host, "sysctl", "-n", key, check=True).stdout.strip()


def test_none_wires_routes_of_protocol_247_and_no_proxy_entry(topo, vz):
    vz.write_config('[routed]\nneighbour_devs = "none"\n')
    # Computer X owns the first IP on the LAN: with no neighbour device there is no LAN
    # to probe, so the start is not refused (the routing fabric decides who gets it)
    # (with "detect" the default route would make enp0s5 the neighbour device, and X's
    # answer to the probe would refuse the start)
    topo.ip(topo.lan, "addr", "add", f"{IPS[0]}/32", "dev", "eth0")
    topo.ip(topo.host, "route", "add", "default", "via", X_IP4)
    before = {k: _sysctl(topo, k) for k in (
        "net.ipv6.conf.enp0s5.proxy_ndp", "net.ipv4.neigh.enp0s5.proxy_delay",
        "net.ipv6.neigh.enp0s5.proxy_delay")}
    g = topo.add_guest("ct1", IPS)
    xml = domain_xml("ct1", interfaces=[routed(g.mac, IPS, target=g.host_dev, native=True)])
    vz.start("lxc", "ct1", xml, topo.host)

    for fam, ip in (("-4", IPS[0]), ("-6", IPS[1])):
        shown = topo.ip(topo.host, fam, "route", "show", "proto",
                        str(contract.ROUTE_PROTOCOL))
        line = next(x for x in shown.splitlines() if x.split()[0] == ip)
        words = line.split()
        assert words[1:3] == ["dev", g.host_dev], line
        assert words[words.index("metric") + 1] == str(contract.ROUTE_METRIC), line
    assert _proxy_anywhere(topo) == ""
    assert {k: _sysctl(topo, k) for k in before} == before  # nothing set on the uplink
    assert topo.ping(g.ns, "169.254.0.1")  # the guest side is wired as always
    status = vz.run("status", "--json", ns=topo.host)
    assert status.rc == 0 and '"neighbour_devs": []' in status.text, status.describe()

    vz.stop("lxc", "ct1", xml, topo.host)
    assert topo.ip(topo.host, "route", "show", "proto", "247") == ""
    assert topo.ip(topo.host, "-6", "route", "show", "proto", "247") == ""
    assert _proxy_anywhere(topo) == ""
    assert vz.records() == []
