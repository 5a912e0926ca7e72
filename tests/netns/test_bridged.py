"""Seed 5.2.1.2 / 5.2.2.1 on the real kernel: bridged guests wired by the hook.

The host namespace holds br0 over the uplink enp0s5 (made by `vzlibvirt bridge create`),
Computer X sits in the LAN namespace, and each guest is a namespace behind a veth whose
host end plays libvirt's device. The hook runs exactly as libvirt runs it.
"""

from __future__ import annotations

import pytest

from tests.netns.probes import udp_reaches
from vzlibvirt.lab.domxml import bridged, domain_xml, routed
from vzlibvirt.lab.settings import X_IP4, X_IP6

pytestmark = pytest.mark.netns


@pytest.fixture
def br0(topo, vz):
    r = vz.run("bridge", "create", "br0", "--uplink", "enp0s5", ns=topo.host)
    assert r.rc == 0, r.stderr
    return "br0"


def _guest(topo, vz, name, cidr, driver="lxc", **vzattrs):
    """A bridged guest started through the hooks; returns (guest, xml)."""
    g = topo.add_bridged_guest(name, cidr, host_dev=f"vb{name}", guest_dev="netif1")
    ip = cidr.split("/")[0]
    vzattrs.setdefault("ips", [ip] if vzattrs.get("filter") == "mac-ip" else [])
    xml = domain_xml(name, driver=driver,
                     interfaces=[bridged(g.mac, target=g.host_dev, **vzattrs)])
    vz.start(driver, name, xml, topo.host)
    return g, xml


def _x_neighbour_mac(topo, ip: str) -> str | None:
    out = topo.ip(topo.lan, "neigh", "show", ip).split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


@pytest.mark.parametrize("driver", ["lxc", "qemu"])
def test_seed_bridged_guest(topo, vz, br0, driver):
    g, xml = _guest(topo, vz, "b1", "198.51.100.101/24", driver=driver)

    assert topo.link_master(topo.host, g.host_dev) == "br0"
    mtu_br = topo.ip(topo.host, "-o", "link", "show", "br0").split("mtu")[1].split()[0]
    mtu_port = topo.ip(topo.host, "-o", "link", "show", g.host_dev).split("mtu")[1].split()[0]
    assert mtu_port == mtu_br
    assert topo.ping(topo.lan, "198.51.100.101") and topo.ping(g.ns, X_IP4)
    # X talks to the guest's own MAC, not the host's (the seed's point of bridged mode)
    assert _x_neighbour_mac(topo, "198.51.100.101") == g.mac.lower()
    # a LAN broadcast from X is seen inside the guest
    seen = udp_reaches(topo, topo.lan, X_IP4, g.ns, "198.51.100.255")
    assert seen == X_IP4

    vz.stop(driver, "b1", xml, topo.host)
    assert topo.link_master(topo.host, g.host_dev) is None
    assert vz.records() == []


def test_prepare_refuses_missing_bridge(topo, vz):
    xml = domain_xml("nobr", interfaces=[bridged("52:54:00:aa:0b:01", bridge="br7")])
    r = vz.hook("lxc", "nobr", "prepare", xml, ns=topo.host)
    assert r.rc == 1
    assert "bridge br7 does not exist" in r.stderr and "bridge create" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_routed_venet0_and_bridged_netif1(topo, vz, br0):
    """One container in both modes at once, as in the seed."""
    topo.ip(topo.lan, "addr", "add", "203.0.113.10/24", "dev", "eth0")
    g = topo.add_guest("ct", ["198.51.100.150"], host_dev="vr0", guest_dev="venet0")
    topo.ip(topo.host, "link", "add", "vb0", "type", "veth", "peer", "name", "netif1",
            "netns", g.ns)
    mac2 = "52:54:00:aa:0c:02"
    topo.ip(g.ns, "link", "set", "netif1", "address", mac2)
    topo.ip(g.ns, "addr", "add", "203.0.113.51/24", "dev", "netif1")
    topo.ip(g.ns, "link", "set", "netif1", "up")
    xml = domain_xml("ct", interfaces=[
        routed(g.mac, ["198.51.100.150"], target="vr0", native=True),
        bridged(mac2, target="vb0", guest="netif1"),
    ])
    vz.start("lxc", "ct", xml, topo.host)

    assert topo.link_master(topo.host, "vb0") == "br0"
    assert "198.51.100.150" in topo.proxy_entries("br0")
    assert topo.ping(topo.lan, "198.51.100.150"), "routed venet0 unreachable"
    assert topo.ping(topo.lan, "203.0.113.51"), "bridged netif1 unreachable"
    assert topo.ping(g.ns, X_IP4) and topo.ping(g.ns, "203.0.113.10")
    assert _x_neighbour_mac(topo, "203.0.113.51") == mac2

    vz.stop("lxc", "ct", xml, topo.host)
    assert topo.link_master(topo.host, "vb0") is None
    assert topo.proxy_entries("br0") == set()
    assert topo.route_to("198.51.100.150") is None


def _spoof_mac(topo, g, mac: str) -> None:
    topo.ip(g.ns, "link", "set", g.guest_dev, "address", mac)


@pytest.mark.parametrize("filt", ["none", "mac", "mac-ip"])
def test_port_security(topo, vz, br0, filt):
    g, xml = _guest(topo, vz, "ps", "198.51.100.101/24", filter=filt)
    # the guest's own MAC and IP always pass
    assert udp_reaches(topo, g.ns, "198.51.100.101", topo.lan, X_IP4) == "198.51.100.101"
    assert topo.ping(g.ns, X_IP4)

    # an IP it was not given: dropped only with mac-ip
    topo.ip(g.ns, "addr", "add", "198.51.100.199/24", "dev", g.guest_dev)
    got = udp_reaches(topo, g.ns, "198.51.100.199", topo.lan, X_IP4)
    assert got == (None if filt == "mac-ip" else "198.51.100.199")
    topo.ip(g.ns, "addr", "del", "198.51.100.199/24", "dev", g.guest_dev)

    # another source MAC: dropped with mac and mac-ip
    topo.ip(topo.lan, "neigh", "flush", "dev", "eth0")
    _spoof_mac(topo, g, "52:54:00:ee:ee:ee")
    got = udp_reaches(topo, g.ns, "198.51.100.101", topo.lan, X_IP4)
    assert got == (None if filt != "none" else "198.51.100.101")
    _spoof_mac(topo, g, g.mac)
    assert udp_reaches(topo, g.ns, "198.51.100.101", topo.lan, X_IP4) == "198.51.100.101"

    vz.stop("lxc", "ps", xml, topo.host)
    assert topo.nft_elements("ports") == []
    assert topo.nft_elements("port_mac") == []


def test_stop_removes_only_its_elements_and_port(topo, vz, br0):
    a, xml_a = _guest(topo, vz, "pa", "198.51.100.101/24", filter="mac-ip")
    b, xml_b = _guest(topo, vz, "pb", "198.51.100.102/24", filter="mac")
    assert len(topo.nft_elements("ports")) == 2
    assert len(topo.nft_elements("port_ip4")) == 1

    vz.stop("lxc", "pa", xml_a, topo.host)
    assert topo.link_master(topo.host, a.host_dev) is None
    assert topo.link_master(topo.host, b.host_dev) == "br0"
    macs = [e["concat"][1] for e in topo.nft_elements("port_mac")]
    assert macs == [b.mac.lower()]
    assert topo.nft_elements("port_ip4") == [] and topo.nft_elements("port_ip6") == []
    assert len(topo.nft_elements("ports")) == 1
    assert topo.ping(b.ns, X_IP4)

    # a second stop is a no-op; b is untouched
    vz.stop("lxc", "pa", xml_a, topo.host)
    assert len(topo.nft_elements("ports")) == 1
    vz.stop("lxc", "pb", xml_b, topo.host)
    assert topo.nft_elements("ports") == [] and topo.nft_elements("port_mac") == []


def test_isolated_ports_reach_uplink_not_each_other(topo, vz, br0):
    a, _ = _guest(topo, vz, "ia", "198.51.100.101/24", isolated="yes")
    b, _ = _guest(topo, vz, "ib", "198.51.100.102/24", isolated="yes")
    c, _ = _guest(topo, vz, "ic", "198.51.100.103/24")
    assert "isolated on" in topo.ip(topo.host, "-d", "link", "show", a.host_dev)
    assert topo.ping(a.ns, X_IP4) and topo.ping(b.ns, X_IP4)
    assert not topo.ping(a.ns, "198.51.100.102")
    assert topo.ping(a.ns, "198.51.100.103") and topo.ping(c.ns, "198.51.100.102")


def test_libvirt_plugged_port_gets_filter_and_keeps_port(topo, vz, br0):
    """type='bridge': libvirt plugs the port; we add port security and leave the port."""
    g = topo.add_bridged_guest("lp", "198.51.100.101/24", host_dev="vnet7",
                          guest_dev="eth0")
    topo.ip(topo.host, "link", "set", "vnet7", "master", "br0")  # what libvirt does
    topo.ip(topo.host, "link", "set", "vnet7", "up")
    xml = domain_xml("lp", driver="qemu", interfaces=[
        bridged(g.mac, target="vnet7", guest=None, type="bridge", source_bridge="br0",
                filter="mac", mode=None)])
    vz.start("qemu", "lp", xml, topo.host)
    assert len(topo.nft_elements("ports")) == 1
    topo.ip(topo.lan, "neigh", "flush", "dev", "eth0")
    assert topo.ping(g.ns, X_IP4)
    _spoof_mac(topo, g, "52:54:00:ee:ee:ee")
    assert udp_reaches(topo, g.ns, "198.51.100.101", topo.lan, X_IP4) is None

    vz.stop("qemu", "lp", xml, topo.host)
    assert topo.nft_elements("ports") == []
    assert topo.link_master(topo.host, "vnet7") == "br0"  # libvirt's port stays


RA_LISTEN = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(0.5)
print('ready', flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if data and data[0] == 134:
        print('ra', addr[0], flush=True)
        break
else:
    print('none', flush=True)
"""

RA_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
ra = bytes([134, 0, 0, 0, 64, 0, 0x07, 0x08]) + bytes(8)
for _ in range(10):
    s.sendto(ra, ('ff02::1', 0, 0, socket.if_nametoindex(sys.argv[1])))
    time.sleep(0.2)
"""


def _ra_reaches_x(topo, g) -> bool:
    import subprocess
    import sys

    p = subprocess.Popen(["ip", "netns", "exec", topo.lan, sys.executable, "-c", RA_LISTEN,
                          "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        topo.exec(g.ns, sys.executable, "-c", RA_SEND, g.guest_dev, timeout=30)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out.startswith("ra")


@pytest.mark.parametrize("filt", ["none", "mac-ip"])
def test_port_security_ipv6(topo, vz, br0, filt):
    """mac-ip: own IPv6 and own EUI-64 link-local pass; another source and RAs do not."""
    g = topo.add_bridged_guest("p6", "2001:db8:100::101/64", host_dev="vbp6",
                          guest_dev="netif1")
    topo.ip(g.ns, "link", "set", g.guest_dev, "addrgenmode", "eui64")
    xml = domain_xml("p6", interfaces=[bridged(g.mac, target=g.host_dev, filter=filt,
                                               ips=["2001:db8:100::101"])])
    vz.start("lxc", "p6", xml, topo.host)
    assert udp_reaches(topo, g.ns, "2001:db8:100::101", topo.lan, X_IP6,
                       listen="::") == "2001:db8:100::101"
    assert topo.ping(g.ns, X_IP6)
    topo.ip(g.ns, "-6", "addr", "add", "2001:db8:100::199/64", "dev", g.guest_dev, "nodad")
    got = udp_reaches(topo, g.ns, "2001:db8:100::199", topo.lan, X_IP6, listen="::")
    assert got == (None if filt == "mac-ip" else "2001:db8:100::199")
    assert _ra_reaches_x(topo, g) == (filt == "none")
    vz.stop("lxc", "p6", xml, topo.host)
    assert topo.nft_elements("port_ip6") == []


def test_mac_already_on_the_bridge_is_refused(topo, vz, br0):
    """A guest whose MAC the bridge already knows behind another port (another guest,
    or a host on the LAN) is refused at `started`, with nothing applied."""
    g = topo.add_bridged_guest("b9", "198.51.100.109/24", host_dev="vbb9",
                          guest_dev="netif1")
    topo.exec(topo.host, "bridge", "fdb", "add", g.mac, "dev", "enp0s5", "master", "static",
              check=True)
    xml = domain_xml("b9", interfaces=[bridged(g.mac, target=g.host_dev)])
    r = vz.hook("lxc", "b9", "started", xml, ns=topo.host)
    assert r.rc == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"MAC {g.mac} is already present on br0 (behind port enp0s5)" in r.stderr
    assert topo.link_master(topo.host, "vbb9") is None and vz.records() == []
