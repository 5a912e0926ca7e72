"""Seed 5.2.1.1 / 5.2.2.2 on the real kernel: host-routed guests wired by the hook.

The host namespace plays the Virtuozzo server with uplink enp0s5, the LAN namespace
plays Computer X, and each guest is a namespace behind a veth whose host end is the
device libvirt would have made. The hook runs exactly as libvirt runs it.
"""

from __future__ import annotations

import pytest

from tests.netns.probes import udp_reaches
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.settings import LAN_GATEWAY4 as HOST_UPLINK_IP4
from vzlibvirt.lab.settings import X_IP4, X_IP6

pytestmark = pytest.mark.netns

SEED_IPS = ["198.51.100.101", "198.51.100.102", "198.51.100.103"]


def _host_mac(topo) -> str:
    out = topo.ip(topo.host, "-o", "link", "show", "enp0s5")
    return out.split("link/ether")[1].split()[0]


def _containers(topo, vz):
    guests = []
    for n, ip in enumerate(SEED_IPS, start=1):
        g = topo.add_guest(f"ct{n}", [ip])
        xml = domain_xml(g.name, interfaces=[routed(g.mac, [ip], target=g.host_dev,
                                                    native=True)])
        vz.start("lxc", g.name, xml, topo.host)
        guests.append((g, xml))
    return guests


def test_seed_routed_containers(topo, vz):
    guests = _containers(topo, vz)

    # what the seed shows with `arp -n` (flags MP on enp0s5) and `route -n`
    assert topo.proxy_entries("enp0s5") == set(SEED_IPS)
    for g, _ in guests:
        assert topo.route_to(g.ips[0]).split()[:3] == [g.ips[0], "dev", g.host_dev]
        assert "169.254.0.1/32" in topo.ip(topo.host, "addr", "show", g.host_dev)

    # Computer X asks who has .101: the host answers with its own MAC
    r = topo.exec(topo.lan, "arping", "-c", "1", "-w", "3", "-I", "eth0", SEED_IPS[0])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _host_mac(topo).lower() in r.stdout.lower()

    for g, _ in guests:
        assert topo.ping(topo.lan, g.ips[0]), f"X cannot reach {g.name}"
        assert topo.ping(g.ns, X_IP4), f"{g.name} cannot reach X"
    a, b = guests[0][0], guests[1][0]
    assert topo.ping(a.ns, b.ips[0]) and topo.ping(b.ns, a.ips[0])


def test_stop_removes_only_ours(topo, vz):
    # an administrator's own proxy entry, before any guest
    topo.ip(topo.host, "neigh", "add", "proxy", "198.51.100.150", "dev", "enp0s5")
    guests = _containers(topo, vz)
    g1, xml1 = guests[0]
    vz.stop("lxc", g1.name, xml1, topo.host)

    assert topo.proxy_entries() == {"198.51.100.150", *SEED_IPS[1:]}
    assert topo.route_to(g1.ips[0]) is None
    assert not topo.ping(topo.lan, g1.ips[0], wait=1)
    for g, _ in guests[1:]:
        assert topo.route_to(g.ips[0]) is not None and topo.ping(topo.lan, g.ips[0])
    # a second stop is a no-op
    vz.stop("lxc", g1.name, xml1, topo.host)
    for g, xml in guests[1:]:
        vz.stop("lxc", g.name, xml, topo.host)
    assert topo.proxy_entries() == {"198.51.100.150"}
    assert not any("proto 247" in r for r in topo.host_routes())
    assert vz.records() == []


def test_spoofed_source_is_dropped(topo, vz):
    """Computer X listens: what it sees is what the host forwarded, replies or not."""
    (g, _), *_ = _containers(topo, vz)
    assert udp_reaches(topo, g.ns, g.ips[0], topo.lan, X_IP4) == g.ips[0]
    # an address that is not routed to it
    topo.ip(g.ns, "addr", "add", "198.51.100.177/32", "dev", g.guest_dev)
    assert udp_reaches(topo, g.ns, "198.51.100.177", topo.lan, X_IP4) is None
    # nor its neighbour guest's address
    topo.ip(g.ns, "addr", "add", f"{SEED_IPS[1]}/32", "dev", g.guest_dev)
    assert udp_reaches(topo, g.ns, SEED_IPS[1], topo.lan, X_IP4) is None


def test_routed_vm_ipv4_and_ipv6(topo, vz):
    ips = ["198.51.100.201", "2001:db8:100::201"]
    g = topo.add_guest("vm1", ips, guest_dev="eth0")
    xml = domain_xml("vm1", driver="qemu", interfaces=[routed(g.mac, ips, target=g.host_dev)])
    vz.start("qemu", "vm1", xml, topo.host)

    assert topo.proxy_entries() == set(ips)
    assert "fe80::1/128" in topo.ip(topo.host, "-6", "addr", "show", g.host_dev)
    assert topo.route_to(ips[1]).startswith(f"{ips[1]} dev {g.host_dev}")
    assert topo.ping(topo.lan, ips[0]) and topo.ping(topo.lan, ips[1])
    assert topo.ping(g.ns, X_IP4) and topo.ping(g.ns, X_IP6)
    assert topo.ping(g.ns, "169.254.0.1") and topo.ping(g.ns, HOST_UPLINK_IP4)
    # IPv6 has no rp_filter: the nftables reverse-path check drops a spoofed source
    # (Computer X listens, so what is seen is what crossed the host, replies or not)
    topo.ip(g.ns, "-6", "addr", "add", "2001:db8:100::177/128", "dev", g.guest_dev, "nodad")
    assert udp_reaches(topo, g.ns, ips[1], topo.lan, X_IP6, listen="::") == ips[1]
    assert udp_reaches(topo, g.ns, "2001:db8:100::177", topo.lan, X_IP6, listen="::") is None

    vz.stop("qemu", "vm1", xml, topo.host)
    assert topo.proxy_entries() == set()
    assert topo.route_to(ips[0]) is None and topo.route_to(ips[1]) is None
    assert not topo.ping(topo.lan, ips[1], wait=1)
