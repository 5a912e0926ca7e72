"""The agent's `check` / `apply` requests (what `vzlibvirt set` and the libvirt event
thread use) on the real kernel: the difference is applied, nothing else is touched, and
a refused change is applied not at all."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.netns.probes import host_snapshot
from tests.netns.test_agent import OPS, life
from tests.netns.test_drift import start_agent
from vzlibvirt.contract import decode, encode, recv_all
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.resident import Resident

pytestmark = pytest.mark.netns
MAC = "52:54:00:aa:00:01"


def ask(agent: Resident, *fields: bytes) -> tuple[int, str]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(agent.sock))
    s.sendall(encode(list(fields)))
    s.shutdown(socket.SHUT_WR)
    rc, err, _ = decode(recv_all(s))
    s.close()
    return int(rc), err.decode()


def test_apply_adds_and_removes_exactly_the_difference(topo, vz):
    agent = start_agent(topo, vz)
    try:
        g = topo.add_guest("ct1", ["198.51.100.101"])

        def xml(*extra: str) -> bytes:
            iface = routed(MAC, g.ips, target=g.host_dev, native=True)
            if extra:
                iface["vz"] = {"mode": "routed", "ips": list(extra)}
            return domain_xml("ct1", interfaces=[iface])

        life(vz, topo, xml(), ops=OPS[:3])
        before = host_snapshot(topo)
        # refused: nothing applied, one line
        for bad, reason in (("198.51.100.2", "is an address of this host"),
                            ("198.51.100.10", "already in use on the LAN")):
            rc, err = ask(agent, b"check", b"lxc", xml(bad))
            assert rc == 1 and reason in err and err.count("\n") == 1, err
            rc, err = ask(agent, b"apply", b"lxc", xml(bad))
            assert rc == 1 and reason in err, err
            assert host_snapshot(topo) == before
        # added: route and proxy entry for the new IP only
        assert ask(agent, b"check", b"lxc", xml("198.51.100.150")) == (0, "")
        rc, err = ask(agent, b"apply", b"lxc", xml("198.51.100.150"))
        assert rc == 0 and "198.51.100.150" in err, err
        assert topo.proxy_entries() == {"198.51.100.101", "198.51.100.150"}
        assert topo.route_to("198.51.100.150") and topo.route_to("198.51.100.101")
        assert topo.ping(topo.lan, "198.51.100.101")
        # removed again: exactly the state before
        rc, err = ask(agent, b"apply", b"lxc", xml())
        assert rc == 0 and "route 198.51.100.150/32" in err, err
        assert host_snapshot(topo) == before
        # applying the same twice changes nothing
        assert ask(agent, b"apply", b"lxc", xml()) == (0, "")
        assert ask(agent, b"apply", b"qemu-not", xml())[0] == 1
    finally:
        agent.stop()


def test_addresses_inside_a_guest_namespace(topo):
    """`set`'s in-container step: the address goes on the device with the guest's MAC
    inside its namespace (entered by a thread only), and comes off again."""
    import os

    from vzlibvirt.guest_inside import set_addresses

    g = topo.add_guest("ct1", ["198.51.100.101"])
    fd = os.open(f"/run/netns/{g.ns}", os.O_RDONLY)
    try:
        set_addresses(fd, g.mac, ["198.51.100.150", "2001:db8:100::150"], [])
        out = topo.ip(g.ns, "-o", "addr", "show", "dev", g.guest_dev, "scope", "global")
        assert "198.51.100.150/32" in out and "2001:db8:100::150/128" in out, out
        assert "198.51.100.101/32" in out  # the guest's own address untouched
        set_addresses(fd, g.mac, [], ["198.51.100.150"])
        out = topo.ip(g.ns, "-o", "addr", "show", "dev", g.guest_dev, "scope", "global")
        assert "198.51.100.150" not in out and "2001:db8:100::150/128" in out, out
        assert "198.51.100.101/32" in out
    finally:
        os.close(fd)


def test_end_dad_inside_a_guest_namespace(topo):
    """A container start's IPv6 addresses: libvirt adds them with duplicate address
    detection, which keeps them deaf; end_dad puts exactly the named tentative ones back
    without it, and the host forgets its unanswered resolution of them."""
    import os

    from vzlibvirt.guest_inside import end_dad

    g = topo.add_guest("ct1", ["198.51.100.101"])
    # DAD that lasts: 50 probes, one a second
    topo.ip(g.ns, "link", "set", g.guest_dev, "up")
    subprocess.run(["ip", "netns", "exec", g.ns, "sysctl", "-qw",
                    f"net.ipv6.conf.{g.guest_dev}.accept_dad=1",
                    f"net.ipv6.conf.{g.guest_dev}.dad_transmits=50"], check=True)
    for ip in ("2001:db8:100::160", "2001:db8:100::161"):
        topo.ip(g.ns, "addr", "add", f"{ip}/128", "dev", g.guest_dev)
    out = topo.ip(g.ns, "-o", "-6", "addr", "show", "dev", g.guest_dev, "scope", "global")
    assert out.count("tentative") == 2, out
    fd = os.open(f"/run/netns/{g.ns}", os.O_RDONLY)
    try:
        assert end_dad(fd, g.mac, ["2001:db8:100::160", "2001:db8:100::170",
                                   "198.51.100.101"]) == ["2001:db8:100::160"]
        assert end_dad(fd, g.mac, ["198.51.100.101"]) == []  # IPv4 has no DAD
    finally:
        os.close(fd)
    lines = topo.ip(g.ns, "-o", "-6", "addr", "show", "dev", g.guest_dev,
                    "scope", "global").splitlines()
    by_ip = {ln.split()[3]: ln for ln in lines}
    assert "tentative" not in by_ip["2001:db8:100::160/128"], lines
    assert "tentative" in by_ip["2001:db8:100::161/128"], lines  # not named: untouched

    # the host side: an unanswered resolution is dropped, a second call finds nothing
    topo.ip(topo.host, "neigh", "replace", "2001:db8:100::160", "dev", g.host_dev,
            "lladdr", g.mac, "nud", "stale")
    forget = ("import socket; from vzlibvirt.netlink import Netlink\n"
              "with Netlink() as nl:\n"
              f"    i = socket.if_nametoindex({g.host_dev!r})\n"
              "    print(nl.neigh_forget('2001:db8:100::160', i),"
              " nl.neigh_forget('2001:db8:100::160', i))")
    r = subprocess.run(["ip", "netns", "exec", topo.host, sys.executable, "-c", forget],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["True", "False"], r
    assert "2001:db8:100::160" not in topo.ip(topo.host, "-6", "neigh", "show",
                                              "dev", g.host_dev)
