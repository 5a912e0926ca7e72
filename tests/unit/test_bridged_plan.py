"""Bridged planning without root: which entries, in which order, and their wire formats."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from vzlibvirt.bridge_admin import BridgeRecord, _label
from vzlibvirt.bridged import bridged_entries, port_security_entries
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.entries import (
    BridgePort,
    LinkMtu,
    LinkUp,
    PortFilter,
    PortIP,
    PortIsolated,
    PortMac,
    entry_from_json,
)
from vzlibvirt.lab.domxml import bridged, domain_xml
from vzlibvirt.netlink_admin import AddrSpec
from vzlibvirt.portsec import RULESET, eui64_link_local

MAC = "52:54:00:aa:00:02"


def _iface(driver="lxc", **kw):
    kw.setdefault("target", "vnet3")
    dom = parse_domain(domain_xml("d", driver=driver, interfaces=[bridged(MAC, **kw)]))
    return dom.interfaces[0]


def _kinds(entries):
    return [type(e).__name__ for e in entries]


def test_ethernet_port_without_filter():
    entries = bridged_entries(_iface(), "vnet3", 7, "br0", 1400)
    assert entries == [LinkMtu("vnet3", 7, 1400), BridgePort("vnet3", 7, "br0"),
                       LinkUp("vnet3", 7)]


def test_filter_comes_before_the_port_joins_the_bridge():
    iface = _iface(filter="mac-ip", ips=["198.51.100.101", "2001:db8::101"], isolated="yes")
    entries = bridged_entries(iface, "vnet3", 7, "br0", 1500)
    assert _kinds(entries) == ["PortMac", "PortIP", "PortIP", "PortIP", "PortFilter",
                               "LinkMtu", "BridgePort", "PortIsolated", "LinkUp"]
    ips = [e.address for e in entries if isinstance(e, PortIP)]
    assert ips == ["198.51.100.101", "2001:db8::101", "fe80::5054:ff:feaa:2"]
    assert PortFilter("vnet3", 7, "mac-ip") in entries


def test_mac_filter_allows_no_ip_list():
    entries = bridged_entries(_iface(filter="mac"), "vnet3", 7, "br0", 1500)
    assert _kinds(entries)[:2] == ["PortMac", "PortFilter"]
    assert not any(isinstance(e, PortIP) for e in entries)


def test_libvirt_plugged_port_is_only_checked():
    iface = _iface(driver="qemu", type="bridge", source_bridge="br0", guest=None,
                   filter="mac", isolated="yes", mode=None)
    assert iface.plugged_by_libvirt
    entries = bridged_entries(iface, "vnet3", 7, "br0", 1500)
    assert _kinds(entries) == ["PortMac", "PortFilter", "BridgePort", "PortIsolated"]


def test_qemu_default_mode_is_bridged():
    iface = _iface(driver="qemu", mode=None, guest=None)
    assert iface.mode.value == "bridged"


def test_mac_ip_needs_an_ip():
    from vzlibvirt.errors import VzError

    with pytest.raises(VzError, match="mac-ip"):
        _iface(filter="mac-ip", ips=[])


def test_eui64_link_local():
    assert eui64_link_local("52:54:00:12:34:56") == ipaddress.IPv6Address(
        "fe80::5054:ff:fe12:3456")


def test_element_keys_match_the_kernel_layout():
    """Concatenated keys: each field padded to 4 bytes, ifindex in host order."""
    idx = struct.pack("=I", 7)
    assert PortFilter("v", 7, "mac").key() == idx
    assert PortMac("v", 7, MAC).key() == idx + bytes.fromhex("525400aa0002") + b"\0\0"
    assert PortIP("v", 7, "198.51.100.1").key() == idx + bytes([198, 51, 100, 1])
    assert len(PortIP("v", 7, "2001:db8::1").key()) == 20
    assert PortIP("v", 7, "2001:db8::1").set_name == "port_ip6"
    assert PortFilter("v", 7, "mac-ip").elem() == [7, {"jump": {"target": "ip_check"}}]
    assert PortMac("v", 7, MAC).elem() == {"concat": [7, MAC]}


def test_entries_round_trip_through_state_json():
    entries = port_security_entries("vnet3", 7, _iface(filter="mac-ip",
                                                       ips=["198.51.100.9"]).filter,
                                    MAC, ["198.51.100.9"])
    entries += [LinkMtu("vnet3", 7, 1500), BridgePort("vnet3", 7, "br0"),
                PortIsolated("vnet3", 7)]
    for e in entries:
        assert entry_from_json(e.to_json()) == e


def test_ruleset_has_one_lookup_per_frame_for_unfiltered_ports():
    base = RULESET.split("chain prerouting")[1]
    rules = [ln.strip() for ln in base.splitlines() if ln.strip() and "{" not in ln
             and "}" not in ln and not ln.strip().startswith("type ")]
    assert rules == ["iif vmap @ports"]


def test_bridge_record_round_trip_and_labels():
    rec = BridgeRecord(bridge="br0", uplink="enp0s5", phase="created", uplink_mtu=1400,
                       uplink_mac="52:54:00:00:00:01",
                       addresses=[{"family": 4, "address": "198.51.100.2", "prefixlen": 24,
                                   "scope": 0, "flags": 0, "broadcast": None,
                                   "label": "enp0s5:x"}])
    assert BridgeRecord.from_json(rec.to_json()) == rec
    spec = AddrSpec(**rec.addresses[0])
    assert _label(spec, "enp0s5", "br0") == "br0:x"
    assert _label(spec, "eth0", "br0") is None


def test_bridge_cli_usage_and_bad_names(capsys):
    from vzlibvirt.bridge_admin import main

    assert main([]) == 2
    assert main(["create"]) == 2
    capsys.readouterr()
    assert main(["create", "bad/name"]) == 1
    assert main(["create", "br0", "--uplink", "x" * 16]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("vzlibvirt: ") for line in err)
    assert "not a valid interface name" in err[0]
