"""DHCP (issue 7) without root: the [dhcp] config, the planned entry, the dnsmasq config
and the hosts file."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from vzlibvirt.config import Config, DhcpConfig, parse_config
from vzlibvirt.dhcp import read_hosts, write_hosts
from vzlibvirt.dnsmasq import render_config
from vzlibvirt.entries import DhcpHost, ProxyNeighbour, entry_from_json
from vzlibvirt.errors import ConfigError
from vzlibvirt.model import GuestIP
from vzlibvirt.routed import routed_entries

MAC = "52:54:00:AA:00:01"
UPLINK = [("enp0s5", 2)]


def gips(*addrs: str) -> list[GuestIP]:
    return [GuestIP(ipaddress.ip_address(a)) for a in addrs]


def enabled(**kw) -> Config:
    return parse_config({"dhcp": {"enable": True, **kw}, "state": {"dir": "/run/vzt"}})


def test_dhcp_defaults_and_values():
    assert Config().dhcp == DhcpConfig(enable=False, interface="vnet*", lease_time=3600,
                                       dns_servers=())
    cfg = enabled(interface="tap*", lease_time=600, dns_servers=["203.0.113.53"])
    assert cfg.dhcp.interface == "tap*" and cfg.dhcp.lease_time == 600
    assert cfg.dhcp.dns_servers == (ipaddress.IPv4Address("203.0.113.53"),)


@pytest.mark.parametrize("section, needle", [
    ({"enabled": True}, "unknown key 'dhcp.enabled'"),
    ({"enable": "yes"}, "'dhcp.enable' must be bool"),
    ({"interface": "vnet* ; x"}, "'dhcp.interface' must be an interface name pattern"),
    ({"interface": "vnet*\ndhcp-range=x"}, "'dhcp.interface'"),
    ({"interface": ""}, "'dhcp.interface'"),
    ({"lease_time": 60}, "'dhcp.lease_time' must be between"),
    ({"lease_time": True}, "'dhcp.lease_time' must be int"),
    ({"dns_servers": "203.0.113.53"}, "'dhcp.dns_servers' must be a list"),
    ({"dns_servers": ["2001:db8::53"]}, "'dhcp.dns_servers' must be a list of IPv4"),
    ({"dns_servers": ["0.0.0.0"]}, "unicast"),
])
def test_dhcp_refusals(section, needle):
    with pytest.raises(ConfigError) as exc:
        parse_config({"dhcp": section})
    assert needle in str(exc.value)


def test_vm_interface_gets_one_dhcp_host_last():
    got = routed_entries("vnet3", 9, gips("2001:db8::7", "198.51.100.7", "198.51.100.8"),
                         UPLINK, enabled(), dhcp_mac=MAC)
    assert got[-1] == DhcpHost("/run/vzt/dhcp", "vnet3", MAC.lower(), "198.51.100.7")
    assert isinstance(got[-2], ProxyNeighbour)
    assert sum(isinstance(e, DhcpHost) for e in got) == 1
    assert entry_from_json(got[-1].to_json()) == got[-1]


@pytest.mark.parametrize("ips, cfg, mac", [
    (("198.51.100.7",), Config(), MAC),          # [dhcp] not enabled
    (("2001:db8::7",), enabled(), MAC),           # no IPv4 to hand out
    (("198.51.100.7",), enabled(), None),         # a container: libvirt configures it
])
def test_no_dhcp_host(ips, cfg, mac):
    got = routed_entries("vnet3", 9, gips(*ips), UPLINK, cfg, dhcp_mac=mac)
    assert not any(isinstance(e, DhcpHost) for e in got)


def test_no_dhcp_host_for_a_tap_name_dnsmasq_cannot_hold():
    got = routed_entries("vm,1", 9, gips("198.51.100.7"), UPLINK, enabled(), dhcp_mac=MAC)
    assert not any(isinstance(e, DhcpHost) for e in got)


def test_dnsmasq_config_is_fixed_and_scoped():
    text = render_config(enabled(interface="vm*", dns_servers=["203.0.113.53", "203.0.113.54"],
                                 lease_time=900), Path("/run/vzt/dhcp"))
    lines = text.splitlines()
    for line in ("port=0", "bind-dynamic", "interface=vm*", "dhcp-ignore=tag:!known",
                 "shared-network=169.254.0.1,0.0.0.1", "shared-network=169.254.0.1,128.0.0.1",
                 "dhcp-range=set:vzrouted,0.0.0.1,static,128.0.0.0,0.0.0.0,900",
                 "dhcp-range=set:vzrouted,128.0.0.1,static,128.0.0.0,0.0.0.0,900",
                 "dhcp-option=tag:vzrouted,option:netmask,255.255.255.255",
                 "dhcp-option=tag:vzrouted,option:router,169.254.0.1",
                 "dhcp-option=tag:vzrouted,option:classless-static-route,169.254.0.1/32,"
                 "0.0.0.0,0.0.0.0/0,169.254.0.1",
                 "dhcp-option=tag:vzrouted,option:dns-server,203.0.113.53,203.0.113.54",
                 "dhcp-hostsfile=/run/vzt/dhcp/hosts"):
        assert line in lines
    assert not any(line.startswith(("dhcp-range=", "shared-network=")) and "198.51" in line
                   for line in lines)  # guest subnets never reach the main config


def test_hosts_file_entry_round_trip(tmp_path):
    d = tmp_path / "state" / "dhcp"
    a = DhcpHost(str(d), "vnet0", "52:54:00:aa:00:01", "198.51.100.7")
    b = DhcpHost(str(d), "vnet1", "52:54:00:aa:00:02", "203.0.113.7")
    assert not a.present(None)
    assert a.add(None) and not a.add(None) and b.add(None)
    assert read_hosts(d) == ["52:54:00:aa:00:01,tag:vnet0,198.51.100.7",
                             "52:54:00:aa:00:02,tag:vnet1,203.0.113.7"]
    assert (d / "hosts").stat().st_mode & 0o777 == 0o644
    assert a.remove(None) and not a.remove(None) and not a.present(None) and b.present(None)
    write_hosts(d, [])
    assert read_hosts(d) == [] and not b.present(None)


def test_plan_says_what_dhcp_hands_out():
    from vzlibvirt.domain_xml import parse_domain
    from vzlibvirt.lab.domxml import domain_xml, routed
    from vzlibvirt.plan import describe_plan

    xml = domain_xml("vm1", driver="qemu", interfaces=[routed(
        MAC, ["2001:db8::7", "198.51.100.7"], target="vnet0", guest=None)])
    domain = parse_domain(xml)
    line = f"    dhcp: {MAC.lower()} gets 198.51.100.7/32, router 169.254.0.1, option 121 routes"
    assert line in describe_plan(domain, enabled())
    assert not any("dhcp:" in x for x in describe_plan(domain, Config()))


def test_released_keeps_the_last_holder_per_ip(tmp_path):
    from vzlibvirt.dhcp import RELEASED

    d = tmp_path / "state" / "dhcp"
    a = DhcpHost(str(d), "vnet0", "52:54:00:aa:00:01", "198.51.100.7")
    b = DhcpHost(str(d), "vnet1", "52:54:00:aa:00:02", "198.51.100.7")
    c = DhcpHost(str(d), "vnet2", "52:54:00:aa:00:03", "198.51.100.8")
    for e in (a, c):
        e.add(None)
        e.remove(None)
    assert read_hosts(d, RELEASED) == ["52:54:00:aa:00:01,198.51.100.7",
                                       "52:54:00:aa:00:03,198.51.100.8"]
    b.add(None)  # no dnsmasq runs: nothing to release, the bookkeeping is dropped
    assert read_hosts(d, RELEASED) == ["52:54:00:aa:00:03,198.51.100.8"]
    b.remove(None)
    assert read_hosts(d, RELEASED) == ["52:54:00:aa:00:03,198.51.100.8",
                                       "52:54:00:aa:00:02,198.51.100.7"]


def test_dhcp_command_prints_config_and_unit(tmp_path, monkeypatch, capsys):
    from vzlibvirt.cli import main

    cfg = tmp_path / "vz.toml"
    cfg.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n[dhcp]\nenable = true\n')
    monkeypatch.setenv("VZLIBVIRT_CONFIG", str(cfg))
    assert main(["dhcp", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert f"dhcp-hostsfile={tmp_path / 'state' / 'dhcp' / 'hosts'}" in out
    assert main(["dhcp", "--print-unit"]) == 0
    assert " dhcp\n" in capsys.readouterr().out
    cfg.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n')
    assert main(["dhcp"]) == 1
    assert "not enabled" in capsys.readouterr().err
