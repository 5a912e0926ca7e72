"""`vzlibvirt set`'s pure edit: the new <vz:network> and, for a container's persistent
definition, native <ip>; every refusal is the hook's own rule."""

from __future__ import annotations

import pytest
from lxml import etree

from vzlibvirt.config import Config, parse_config
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.errors import ConfigError, VzError
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.vz_edit import Change, current_metadata, plan_edit

GW = Config().gateways
MAC = "52:54:00:aa:00:01"


def ct(ips=("198.51.100.101",), target="vnet0"):
    return domain_xml("ct1", interfaces=[routed(MAC, list(ips), target=target, native=True)])


def vm(ips=("198.51.100.201",)):
    return domain_xml("vm1", driver="qemu", interfaces=[routed(MAC, list(ips),
                                                                target="vnet1")])


def ips(xml: bytes) -> dict[str, str]:
    iface = parse_domain(xml).interfaces[0]
    return {str(i.address): i.source.value for i in iface.ips}


def test_running_container_ipadd_live_vz_ip_persistent_native():
    edit = plan_edit(ct(target=None), ct(), Change(ipadd=("198.51.100.150",)), GW)
    assert edit.added == ["198.51.100.150"] and edit.removed == []
    assert ips(edit.live.xml) == {"198.51.100.101": "native", "198.51.100.150": "vz"}
    assert ips(edit.config.xml) == {"198.51.100.101": "native", "198.51.100.150": "native"}
    assert edit.config.devices_changed and not edit.live.devices_changed
    assert edit.live.metadata == (f'<network><interface mac="{MAC}" mode="routed">'
                                  '<ip address="198.51.100.150"/></interface></network>')
    assert edit.guest_dev == "venet0"


def test_container_ipv6_gets_its_default_route_in_the_definition():
    edit = plan_edit(ct(target=None), None, Change(ipadd=("2001:db8:100::150",)), GW)
    root = etree.fromstring(edit.config.xml)
    assert root.find("devices/interface/ip[@address='2001:db8:100::150']").get("prefix") \
        == "128"
    assert root.find("devices/interface/route[@family='ipv6']").get("gateway") == "fe80::1"


def test_vm_ipadd_and_ipdel_edit_vz_ips_only():
    edit = plan_edit(vm(), vm(), Change(ipadd=("198.51.100.250",),
                                        ipdel=("198.51.100.201",)), GW)
    assert edit.added == ["198.51.100.250"] and edit.removed == ["198.51.100.201"]
    assert ips(edit.config.xml) == ips(edit.live.xml) == {"198.51.100.250": "vz"}
    assert not edit.config.devices_changed


def test_ipdel_all_and_the_last_ip_is_refused_like_the_hook():
    with pytest.raises(VzError, match="routed interface has no IP address"):
        plan_edit(vm(), vm(), Change(ipdel=("all",)), GW)


def test_ipdel_of_a_native_ip_of_a_running_container_says_why_not():
    with pytest.raises(VzError, match="cannot change while the container runs") as exc:
        two = ("198.51.100.101", "198.51.100.102")
        plan_edit(ct(two, target=None), ct(two), Change(ipdel=("198.51.100.101",)), GW)
    assert exc.value.line().startswith("vzlibvirt: domain 'ct1'")


@pytest.mark.parametrize(("change", "reason"), [
    (Change(ipadd=("198.51.100.201",)), "already has IP 198.51.100.201"),
    (Change(ipadd=("127.0.0.1",)), "loopback"),
    (Change(ipadd=("169.254.0.1",)), "gateway"),
    (Change(ipadd=("224.0.0.5",)), "multicast"),
    (Change(ipadd=("not-an-ip",)), "invalid IP address"),
    (Change(ipadd=("198.51.100.7", "198.51.100.7")), "twice"),
    (Change(ipdel=("198.51.100.99",)), "has no IP 198.51.100.99"),
    (Change(iface="52:54:00:ff:ff:ff", ipadd=("198.51.100.7",)), "no interface with MAC"),
    (Change(iface="zz", ipadd=("198.51.100.7",)), "MAC"),
    (Change(mode="bridged", bridge="br 0"), "bridge"),
])
def test_refusals_are_one_line(change, reason):
    with pytest.raises(VzError) as exc:
        plan_edit(vm(), vm(), change, GW)
    line = exc.value.line()
    assert reason in line and "\n" not in line and "domain 'vm1'" in line


def test_several_interfaces_need_iface():
    xml = domain_xml("ct2", interfaces=[routed(MAC, ["198.51.100.1"], native=True),
                                        routed("52:54:00:aa:00:02", ["198.51.100.2"],
                                               native=True)])
    with pytest.raises(VzError, match="--iface"):
        plan_edit(xml, None, Change(ipadd=("198.51.100.3",)), GW)
    edit = plan_edit(xml, None, Change(iface="52:54:00:AA:00:02", ipadd=("198.51.100.3",)),
                     GW)
    assert edit.mac == "52:54:00:aa:00:02" and edit.added == ["198.51.100.3"]


def test_an_unmanaged_ethernet_interface_gets_a_vz_interface():
    xml = domain_xml("vm2", driver="qemu", interfaces=[{"mac": MAC, "type": "ethernet"}])
    assert current_metadata(xml) is None
    edit = plan_edit(xml, None, Change(ipadd=("198.51.100.9",)), GW)
    assert ips(edit.config.xml) == {"198.51.100.9": "vz"}
    assert parse_domain(edit.config.xml).interfaces[0].mode.value == "routed"


def test_agent_config_keys():
    cfg = parse_config({"agent": {"connect": ["qemu:///system?socket=/run/x/libvirt-sock"],
                                  "resync_s": 3}})
    assert cfg.agent.connect == ("qemu:///system?socket=/run/x/libvirt-sock",)
    assert cfg.agent.resync_s == 3
    assert Config().agent.connect == ("qemu:///system", "lxc:///system")
    assert Config().agent.resync_s == 10
    for bad in ({"connect": ["xen:///system"]}, {"connect": "qemu:///system"},
                {"connect": ["qemu:///system"] * 2}, {"resync_s": -1}, {"resync_s": True},
                {"resync": 3}):
        with pytest.raises(ConfigError):
            parse_config({"agent": bad})


def test_live_view_skips_an_unplugged_vz_interface_the_hook_refuses():
    from vzlibvirt.live import parse_live

    xml = vm().replace(b"</vz:network>", b'<vz:interface mac="52:54:00:ee:00:01" '
                       b'mode="routed"><vz:ip address="198.51.100.155"/></vz:interface>'
                       b"</vz:network>")
    with pytest.raises(VzError, match="matches no device"):
        parse_domain(xml)
    domain = parse_live(xml, "qemu", Config())
    assert [i.mac for i in domain.managed_interfaces] == [MAC]


def test_a_live_only_interface_leaves_the_definition_alone():
    live = domain_xml("ct1", interfaces=[routed(MAC, ["198.51.100.101"], target="vnet0",
                                                native=True),
                                         {"mac": "52:54:00:ee:00:01", "type": "ethernet",
                                          "target": "vnet9"}])
    edit = plan_edit(ct(target=None), live, Change(iface="52:54:00:ee:00:01",
                                                   ipadd=("198.51.100.155",)), GW)
    assert edit.config is None and edit.added == ["198.51.100.155"]
    assert ips(edit.live.xml) == {"198.51.100.101": "native"}  # first interface
    with pytest.raises(VzError, match="no interface with MAC"):
        plan_edit(ct(target=None), None, Change(iface="52:54:00:ee:00:01",
                                                ipadd=("198.51.100.155",)), GW)
