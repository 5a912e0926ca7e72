"""Pure planning: the entries a routed interface needs, and the `plan` dry-run text."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from vzlibvirt.config import Config, parse_config
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.entries import (
    Address,
    AnnouncedRoute,
    DeviceSysctl,
    HostSysctl,
    LinkUp,
    ProxyNeighbour,
    Route,
    RoutedPort6,
    entry_from_json,
)
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.model import Driver, GuestIP, IPSource
from vzlibvirt.plan import bridge_for, describe_plan
from vzlibvirt.routed import routed_entries

M1, M2, M3 = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"
UPLINK = [("enp0s5", 2)]


def gips(*addrs: str) -> list[GuestIP]:
    return [GuestIP(ipaddress.ip_address(a)) for a in addrs]


# --- routed_entries ------------------------------------------------------------------------

def test_ipv4_entries_exactly():
    got = routed_entries("veth1", 7, gips("198.51.100.101"), UPLINK, Config())
    assert got == [
        HostSysctl("net/ipv4/ip_forward", "1"),
        DeviceSysctl("enp0s5", 2, "net/ipv4/conf/enp0s5/forwarding", "1"),
        DeviceSysctl("enp0s5", 2, "net/ipv4/neigh/enp0s5/proxy_delay", "0"),
        DeviceSysctl("veth1", 7, "net/ipv4/conf/veth1/forwarding", "1"),
        DeviceSysctl("veth1", 7, "net/ipv4/conf/veth1/proxy_arp", "1"),
        DeviceSysctl("veth1", 7, "net/ipv4/conf/veth1/rp_filter", "1"),
        LinkUp("veth1", 7),
        Address("veth1", 7, "169.254.0.1", 32),
        Route("veth1", 7, "198.51.100.101", 32),
        ProxyNeighbour("enp0s5", 2, "198.51.100.101"),
    ]


def test_ipv6_entries_exactly():
    got = routed_entries("tap0", 9, gips("2001:db8:100::101"), UPLINK, Config())
    settings = [("enp0s5", 2, "conf/enp0s5/proxy_ndp", "1"),
                ("enp0s5", 2, "neigh/enp0s5/proxy_delay", "0"),
                ("enp0s5", 2, "conf/enp0s5/use_oif_addrs_only", "1"),
                ("tap0", 9, "conf/tap0/disable_ipv6", "0"),
                ("tap0", 9, "conf/tap0/accept_ra", "0"),
                ("tap0", 9, "conf/tap0/forwarding", "1")]
    assert got == [
        HostSysctl("net/ipv6/conf/all/forwarding", "1"),
        *(DeviceSysctl(dev, idx, f"net/ipv6/{key}", value) for dev, idx, key, value in settings),
        RoutedPort6("tap0", 9),
        LinkUp("tap0", 9),
        Address("tap0", 9, "fe80::1", 128),
        Route("tap0", 9, "2001:db8:100::101", 128),
        ProxyNeighbour("enp0s5", 2, "2001:db8:100::101"),
    ]


def test_dual_stack_many_ips_many_neighbours():
    ips = gips("198.51.100.101", "2001:db8::1", "198.51.100.102")
    neigh = [("enp0s5", 2), ("bond0", 3)]
    got = routed_entries("veth1", 7, ips, neigh, Config())
    kinds = [e.kind for e in got]
    # settings, then link up, then addresses, routes, and proxy entries last
    rank = {"host-sysctl": 0, "dev-sysctl": 0, "rpfilter6-port": 0, "link-up": 1,
            "address": 2, "route": 3, "proxy-neigh": 4}
    assert [rank[k] for k in kinds] == sorted(rank[k] for k in kinds)
    assert {e for e in got if isinstance(e, Address)} == {
        Address("veth1", 7, "169.254.0.1", 32), Address("veth1", 7, "fe80::1", 128)}
    assert [e for e in got if isinstance(e, Route)] == [
        Route("veth1", 7, "198.51.100.101", 32), Route("veth1", 7, "2001:db8::1", 128),
        Route("veth1", 7, "198.51.100.102", 32)]
    proxies = {(e.dev, e.ifindex, e.dst) for e in got if isinstance(e, ProxyNeighbour)}
    assert proxies == {(d, i, str(a)) for a in ips for d, i in neigh}
    assert len(got) == len({e.identity for e in got}), "no entry twice"
    assert {e.key for e in got if isinstance(e, HostSysctl)} == {
        "net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"}


def test_no_neighbour_devices_means_no_proxy_entries():
    got = routed_entries("veth1", 7, gips("198.51.100.101"), [], Config())
    assert not [e for e in got if isinstance(e, ProxyNeighbour)]
    assert all(getattr(e, "dev", "veth1") == "veth1" for e in got)
    assert Route("veth1", 7, "198.51.100.101", 32) in got


def test_gateways_come_from_the_config():
    cfg = parse_config({"routed": {"gateway4": "10.255.255.1", "gateway6": "fd00::1"}})
    got = routed_entries("veth1", 7, gips("198.51.100.7", "2001:db8::7"), UPLINK, cfg)
    assert [e for e in got if isinstance(e, Address)] == [
        Address("veth1", 7, "10.255.255.1", 32), Address("veth1", 7, "fd00::1", 128)]


def test_entries_round_trip_through_the_state_format():
    got = routed_entries("veth1", 7, gips("198.51.100.7", "2001:db8::7"), UPLINK, Config())
    for e in got:
        assert entry_from_json(e.to_json()) == e
        assert e.describe() and "\n" not in e.describe()


def test_routed_entries_from_a_parsed_domain():
    xml = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"], target="veth9",
                                              native=True)])
    (iface,) = parse_domain(xml).routed_interfaces
    got = routed_entries(iface.host_dev, 11, iface.ips, UPLINK, Config())
    assert Route("veth9", 11, "198.51.100.7", 32) in got
    assert ProxyNeighbour("enp0s5", 2, "198.51.100.7") == got[-1]


# --- describe_plan -------------------------------------------------------------------------

def plan_of(xml: bytes, config: Config | None = None) -> list[str]:
    return describe_plan(parse_domain(xml), config or Config())


def test_plan_routed_container_with_vz_ip_says_inside_is_not_configured():
    xml = domain_xml("ct1", interfaces=[routed(M1, ["198.51.100.7", "2001:db8::7"],
                                               target="veth1")], uuid=None)
    lines = plan_of(xml)
    assert lines[0].startswith("domain 'ct1' (lxc, uuid ")
    assert f"  interface {M1}: routed, host device veth1" in lines
    assert "    gateway on host device: 169.254.0.1, fe80::1" in lines
    assert "    route 198.51.100.7/32 dev veth1; proxy neighbour on detect" in lines
    assert "    route 2001:db8::7/128 dev veth1; proxy neighbour on detect" in lines
    assert any("<vz:ip> wires only the host side" in line for line in lines)
    assert "    announce: gratuitous ARP / unsolicited NA after wiring" in lines


def test_plan_native_container_has_no_vz_note():
    xml = domain_xml("ct2", interfaces=[routed(M1, ["198.51.100.7"], native=True)])
    lines = plan_of(xml)
    assert not any("wires only the host side" in line for line in lines)
    assert f"  interface {M1}: routed, host device (host device named by libvirt at " \
           f"start)" in lines


def test_plan_vm_tells_the_guest_side():
    xml = domain_xml("vm1", driver="kvm", interfaces=[routed(M1, ["2001:db8::7"])])
    lines = plan_of(xml)
    assert "    guest side (configured by the guest): address/32 or /128, default via " \
           "fe80::1" in lines
    assert "    gateway on host device: fe80::1" in lines


def test_plan_neighbour_list_and_no_announce():
    cfg = parse_config({"routed": {"neighbour_devs": ["enp0s5", "enp0s6"],
                                   "announce": False}})
    lines = plan_of(domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"])]), cfg)
    assert any(line.endswith("proxy neighbour on enp0s5, enp0s6") for line in lines)
    assert not any("announce" in line for line in lines)


def test_plan_bridged_and_left_alone():
    xml = domain_xml("ct", interfaces=[
        {"mac": M1, "vz": {"mode": "bridged", "filter": "mac-ip", "isolated": "yes",
                           "ips": ["198.51.100.7"]}},
        {"mac": M2, "type": "bridge", "source_bridge": "br5", "vz": {"mode": "bridged"}},
        {"mac": M3, "type": "user"},
    ])
    cfg = parse_config({"bridged": {"bridge": "br7"}})
    lines = plan_of(xml, cfg)
    assert f"  interface {M1}: bridged on br7 (plugged by vzlibvirt), host device (host " \
           f"device named by libvirt at start), filter mac-ip, isolated" in lines
    assert "    allowed IP 198.51.100.7" in lines
    assert any(line.startswith(f"  interface {M2}: bridged on br5 (plugged by libvirt)")
               for line in lines)
    assert f"  interface {M3}: type user, left alone: no <vz:interface>" in lines


def test_plan_network_interface_names_the_network():
    xml = domain_xml("ct", interfaces=[{"mac": M1, "type": "network",
                                        "vz": {"mode": "bridged"}}])
    xml = xml.replace(b'<mac address="52:54:00:aa:00:01"/>',
                      b'<mac address="52:54:00:aa:00:01"/><source network="lan"/>')
    lines = plan_of(xml)
    assert any("bridged on network 'lan' (plugged by libvirt)" in line for line in lines)


def test_plan_nothing_managed():
    lines = plan_of(domain_xml("ct", interfaces=[{"mac": M1, "type": "bridge",
                                                  "source_bridge": "br0"}]))
    assert "  no interface managed by vzlibvirt: nothing to do" in lines
    assert f"  interface {M1}: type bridge, left alone: no <vz:interface>" in lines


def test_bridge_for_defaults_to_the_config():
    d = parse_domain(domain_xml("vm", driver="qemu", interfaces=[{"mac": M1, "vz": {}}]))
    (iface,) = d.interfaces
    assert bridge_for(iface, parse_config({"bridged": {"bridge": "br3"}})) == "br3"
    assert bridge_for(replace(iface, bridge="br4"), Config()) == "br4"


@pytest.mark.parametrize("driver", ["lxc", "kvm"])
def test_plan_lines_are_printable(driver):
    xml = domain_xml("ct\u202eevil", driver=driver,
                     interfaces=[routed(M1, ["198.51.100.7"])])
    d = parse_domain(xml)
    assert d.driver is (Driver.LXC if driver == "lxc" else Driver.QEMU)
    assert all(gip.source is IPSource.VZ for gip in d.interfaces[0].ips)
    lines = describe_plan(d, Config())
    assert all("\n" not in line for line in lines)


def test_plan_neighbour_devs_none_names_no_proxy_and_no_announcement():
    cfg = parse_config({"routed": {"neighbour_devs": "none"}})
    lines = plan_of(domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7",
                                                             "2001:db8::7"])]), cfg)
    assert any(line.startswith("    route 198.51.100.7/32 dev ") and
               line.endswith("no proxy neighbour (neighbour_devs = none: a routing daemon "
                             "exports routes of protocol 247)") for line in lines)
    assert not any("proxy neighbour on" in line for line in lines)
    assert not any("announce" in line for line in lines)


def test_neighbour_devs_none_plans_routes_and_no_neighbour_settings():
    """With no neighbour device (neighbour_devs = "none") the plan holds the routes and the
    guest device's own settings, and nothing on any other device: no proxy entry, no
    proxy_ndp / proxy_delay / forwarding on an uplink."""
    ips = gips("198.51.100.101", "2001:db8::1")
    got = routed_entries("veth1", 7, ips, [], parse_config({"routed": {"neighbour_devs":
                                                                        "none"}}))
    routes = [e for e in got if isinstance(e, Route)]
    # the routing daemon exports them: the route is the announcement (a migrating
    # guest's hosts hold it back like a proxy entry), the same kernel route as ever
    assert routes == [AnnouncedRoute("veth1", 7, "198.51.100.101", 32),
                      AnnouncedRoute("veth1", 7, "2001:db8::1", 128)]
    assert {e.reach for e in routes} == {"lan"}
    assert routes[0].identity == Route("veth1", 7, "198.51.100.101", 32).identity
    assert entry_from_json(routes[0].to_json()) == routes[0]
    assert not [e for e in got if isinstance(e, ProxyNeighbour)]
    keys = [e.key for e in got if isinstance(e, DeviceSysctl | HostSysctl)]
    assert keys and not [k for k in keys if "proxy_ndp" in k or "proxy_delay" in k]
    assert {getattr(e, "dev", None) for e in got} == {None, "veth1"}
