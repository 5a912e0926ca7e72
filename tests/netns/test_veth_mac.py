"""LXC's `start` on the real kernel: the container end of each veth, still in the host
namespace under `<guest actual>`, gets back the MAC its XML names when something (on a
real host: systemd-udevd's MACAddressPolicy) gave it another; foreign guests' devices
are never touched. Debian 12's real udev races libvirt in tests/system."""

from __future__ import annotations

import pytest

from vzlibvirt.lab.domxml import bridged, domain_xml, routed

pytestmark = pytest.mark.netns

UDEV_MAC = "ee:27:91:47:66:99"  # what udev's persistent policy gave vz901 in the system VM


def veth(topo, host_end: str, container_end: str, mac: str) -> None:
    topo.ip(topo.host, "link", "add", host_end, "type", "veth", "peer", "name", container_end)
    topo.ip(topo.host, "link", "set", container_end, "address", mac)


def mac_of(topo, dev: str) -> str:
    parts = topo.ip(topo.host, "-o", "link", "show", dev).split()
    return parts[parts.index("link/ether") + 1]


def at_start(xml: bytes, guest: str, actual: str) -> bytes:
    """The domain XML as LXC's `start` shows it: no <target dev>, <guest actual=...>."""
    assert f'<guest dev="{guest}"/>'.encode() in xml
    return xml.replace(f'<guest dev="{guest}"/>'.encode(),
                       f'<guest dev="{guest}" actual="{actual}"/>'.encode())


def test_start_gives_each_container_end_its_xml_mac_back(topo, vz):
    routed_mac, bridged_mac = "52:54:00:aa:0e:01", "52:54:00:aa:0e:02"
    veth(topo, "vnc1", "vnc2", UDEV_MAC)  # udev won the race on venet0's end
    veth(topo, "vnc3", "vnc4", bridged_mac)  # libvirt won it on netif1's
    xml = domain_xml("ct", interfaces=[
        routed(routed_mac, ["198.51.100.71"], native=True),
        bridged(bridged_mac, guest="netif1", filter="mac-ip", ips=["203.0.113.71"])])
    xml = at_start(at_start(xml, "venet0", "vnc2"), "netif1", "vnc4")

    r = vz.hook("lxc", "ct", "start", xml, ns=topo.host)
    assert r.rc == 0, r.stderr
    assert (mac_of(topo, "vnc2"), mac_of(topo, "vnc4")) == (routed_mac, bridged_mac)
    assert f"vnc2 had MAC {UDEV_MAC}, not {routed_mac}" in r.stderr
    assert "vnc4" not in r.stderr  # already right: left alone
    assert vz.applied() == []  # nothing recorded: `start` wires nothing

    again = vz.hook("lxc", "ct", "start", xml, ns=topo.host)
    assert (again.rc, again.stderr) == (0, "")


def test_start_leaves_foreign_guests_devices_alone(topo, vz):
    veth(topo, "vnc5", "vnc6", UDEV_MAC)
    foreign = domain_xml("other", interfaces=[{"mac": "52:54:00:aa:0e:05", "type": "ethernet",
                                               "guest": "eth0"}])
    r = vz.hook("lxc", "other", "start", at_start(foreign, "eth0", "vnc6"), ns=topo.host)
    assert (r.rc, r.stderr) == (0, "")
    assert mac_of(topo, "vnc6") == UDEV_MAC
