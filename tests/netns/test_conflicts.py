"""Conflicts are refused with one clear line, and nothing is applied."""

from __future__ import annotations

import pytest

from tests.netns.probes import host_snapshot
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.settings import X_IP4, X_IP6

pytestmark = pytest.mark.netns


def _xml(g, ips, name=None, driver="lxc"):
    native = driver == "lxc"
    return domain_xml(name or g.name, driver=driver,
                      interfaces=[routed(g.mac, ips, target=g.host_dev, native=native)])


def _refused(vz, topo, xml, name, op, *words):
    before = host_snapshot(topo)
    records = vz.records()
    r = vz.hook("lxc", name, op, xml, ns=topo.host)
    assert r.rc == 1, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"vzlibvirt: domain '{name}'")
    for w in words:
        assert w in r.stderr, r.stderr
    assert host_snapshot(topo) == before
    assert vz.records() == records
    return r.stderr


def test_ip_of_another_running_guest(topo, vz):
    a = topo.add_guest("ct1", ["198.51.100.101"])
    b = topo.add_guest("ct2", ["198.51.100.101"], configure=False)
    vz.start("lxc", "ct1", _xml(a, a.ips), topo.host)
    xml = _xml(b, ["198.51.100.101"])
    for op in ("prepare", "started"):
        line = _refused(vz, topo, xml, "ct2", op, "198.51.100.101",
                        "already routed to running domain 'ct1'", b.mac)
        assert "Traceback" not in line
    # libvirt follows a refused start with stopped + release: ct1 keeps everything
    vz.stop("lxc", "ct2", xml, topo.host)
    assert topo.proxy_entries() == {"198.51.100.101"} and topo.ping(topo.lan, "198.51.100.101")


def test_ip_the_host_owns(topo, vz):
    g = topo.add_guest("ct1", ["198.51.100.2"], configure=False)
    _refused(vz, topo, _xml(g, g.ips), "ct1", "started", "198.51.100.2",
             "is an address of this host")


@pytest.mark.parametrize("ip", [X_IP4, X_IP6])
def test_ip_answered_on_the_lan(topo, vz, ip):
    g = topo.add_guest("ct1", [ip], configure=False)
    x_mac = topo.ip(topo.lan, "-o", "link", "show", "eth0").split("link/ether")[1].split()[0]
    _refused(vz, topo, _xml(g, [ip]), "ct1", "started", f"IP {ip} is already in use on the LAN",
             f"answered by {x_mac} on enp0s5")


def test_probe_can_be_turned_off(topo, vz):
    vz.write_config("[routed]\nconflict_probe = false\n")
    g = topo.add_guest("ct1", [X_IP4], configure=False)
    r = vz.hook("lxc", "ct1", "started", _xml(g, [X_IP4]), ns=topo.host)
    assert r.rc == 0, r.stderr
    assert topo.proxy_entries() == {X_IP4}


def test_administrators_route_elsewhere(topo, vz):
    topo.ip(topo.host, "route", "add", "198.51.100.150/32", "dev", "enp0s5")
    g = topo.add_guest("ct1", ["198.51.100.150"], configure=False)
    _refused(vz, topo, _xml(g, g.ips), "ct1", "started", "198.51.100.150",
             "already routed via enp0s5 (not by vzlibvirt)")
    assert topo.route_to("198.51.100.150").startswith("198.51.100.150 dev enp0s5")
