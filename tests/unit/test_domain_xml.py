"""Parsing and validation of domain XML into the model (in-process, no root).

The refusals are covered file by file in test_bad_inputs.py (through the CLI) and again
here in-process against the model; this module is mostly about what good input becomes.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from vzlibvirt.domain_xml import MAX_XML_BYTES, parse_domain
from vzlibvirt.errors import VzError
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.model import Driver, Filter, GuestIP, IPSource, Mode

# The contract's example (design.md, "Domain XML"), copied exactly. It has no <name>
# (libvirt always writes one), so the tests add one where they need a parse.
CONTRACT_EXAMPLE = """\
<domain type='lxc'>                          <!-- or type='kvm' / type='qemu' -->
  <metadata>
    <vz:network xmlns:vz="http://vzlibvirt.org/xmlns/network/1.0">
      <vz:interface mac="52:54:00:aa:00:01" mode="routed">
        <vz:ip address="198.51.100.101"/>
        <vz:ip address="2001:db8:100::101"/>
      </vz:interface>
      <vz:interface mac="52:54:00:aa:00:02" mode="bridged" bridge="br0"/>
    </vz:network>
  </metadata>
  <devices>
    <interface type='ethernet'>               <!-- routed: a plain tap (QEMU) / veth (LXC) -->
      <mac address='52:54:00:aa:00:01'/>
      <guest dev='venet0'/>                   <!-- LXC only: the name inside the container -->
    </interface>
    <interface type='ethernet'>               <!-- bridged by us: we plug it into br0 -->
      <mac address='52:54:00:aa:00:02'/>
      <guest dev='netif1'/>
    </interface>
    <interface type='bridge'>                 <!-- bridged by libvirt itself -->
      <source bridge='br0'/>
      <mac address='52:54:00:aa:00:03'/>
    </interface>
  </devices>
</domain>
"""
M1, M2, M3 = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"
UUID = "0f6c7a3e-5f43-4c1e-9a55-3b1b8c2d9e10"
ip = ipaddress.ip_address


def example(dtype: str = "lxc", name: str = "ct101") -> bytes:
    text = CONTRACT_EXAMPLE.replace("<domain type='lxc'>",
                                    f"<domain type='{dtype}'><name>{name}</name>"
                                    f"<uuid>{UUID}</uuid>", 1)
    return text.encode()


def refused(data: bytes, **kw) -> VzError:
    with pytest.raises(VzError) as info:
        parse_domain(data, **kw)
    return info.value


# --- the contract's example ------------------------------------------------------------

def test_contract_example_as_written_needs_a_name():
    err = refused(CONTRACT_EXAMPLE.encode())
    assert err.line() == "vzlibvirt: domain XML has no <name>"


def test_contract_example_lxc():
    d = parse_domain(example(), require_uuid=True)
    assert (d.driver, d.name, d.uuid) == (Driver.LXC, "ct101", UUID)
    assert len(d.interfaces) == 3
    r, b, lib = d.interfaces
    assert r.mac == M1 and r.type == "ethernet" and r.mode is Mode.ROUTED
    assert r.guest_dev == "venet0" and r.host_dev is None
    assert r.ips == (GuestIP(ip("198.51.100.101"), IPSource.VZ),
                     GuestIP(ip("2001:db8:100::101"), IPSource.VZ))
    assert b.mac == M2 and b.mode is Mode.BRIDGED and b.bridge == "br0"
    assert b.guest_dev == "netif1" and not b.plugged_by_libvirt and b.ips == ()
    assert b.filter is Filter.NONE and b.isolated is False
    assert lib.mac == M3 and lib.type == "bridge" and lib.mode is None
    assert lib.bridge == "br0" and not lib.managed
    assert d.routed_interfaces == (r,) and d.bridged_interfaces == (b,)
    assert d.managed_interfaces == (r, b)
    assert d.key == f"lxc-{UUID}"


@pytest.mark.parametrize("dtype", ["kvm", "qemu"])
def test_contract_example_vm(dtype):
    d = parse_domain(example(dtype), driver=Driver.QEMU)
    assert d.driver is Driver.QEMU
    assert [i.mode for i in d.interfaces] == [Mode.ROUTED, Mode.BRIDGED, None]
    assert [str(a) for a in d.interfaces[0].ips] == ["198.51.100.101", "2001:db8:100::101"]


def test_the_model_is_immutable():
    d = parse_domain(example())
    with pytest.raises(AttributeError):
        d.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.interfaces[0].mode = Mode.BRIDGED  # type: ignore[misc]


# --- rules of the contract ---------------------------------------------------------------

def test_lxc_native_ip_without_vz_is_routed():
    xml = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7", "2001:db8::7"],
                                              target="vethX1", native=True)])
    (i,) = parse_domain(xml).interfaces
    assert i.mode is Mode.ROUTED and i.host_dev == "vethX1" and i.guest_dev == "venet0"
    assert i.ips == (GuestIP(ip("198.51.100.7"), IPSource.NATIVE),
                     GuestIP(ip("2001:db8::7"), IPSource.NATIVE))


def test_lxc_native_and_vz_ips_are_joined():
    iface = routed(M1, ["198.51.100.7"])
    iface["native"] = [("198.51.100.8", 32)]
    (i,) = parse_domain(domain_xml("ct", interfaces=[iface])).interfaces
    assert [(str(g), g.source) for g in i.ips] == [("198.51.100.7", IPSource.VZ),
                                                   ("198.51.100.8", IPSource.NATIVE)]


def test_interfaces_without_vz_are_left_alone():
    xml = domain_xml("ct", interfaces=[
        {"mac": M1, "type": "ethernet"},  # LXC ethernet, no native <ip>
        {"mac": M2, "type": "bridge", "source_bridge": "virbr0"},
        {"mac": M3, "type": "network"},
    ])
    d = parse_domain(xml)
    assert [i.mode for i in d.interfaces] == [None, None, None]
    assert d.managed_interfaces == ()
    assert d.interfaces[1].bridge == "virbr0"


def test_qemu_interface_with_native_ip_and_no_vz_is_left_alone():
    iface = {"mac": M1, "type": "ethernet", "native": [("198.51.100.7", 32)]}
    (i,) = parse_domain(domain_xml("vm", driver="kvm", interfaces=[iface])).interfaces
    assert i.mode is None and i.ips == ()


def test_native_ip_on_qemu_with_vz_is_refused():
    iface = routed(M1, ["198.51.100.7"])
    iface["native"] = [("198.51.100.8", 32)]
    err = refused(domain_xml("vm", driver="kvm", interfaces=[iface]))
    assert err.line() == (f"vzlibvirt: domain 'vm' interface {M1}: QEMU does not support "
                          f"interface <ip>; list VM IPs as <vz:ip>")


@pytest.mark.parametrize("vz_mac,dev_mac", [("52:54:00:AA:00:01", "52:54:00:aa:00:01"),
                                            ("52:54:00:aa:00:01", "52:54:00:AA:00:01"),
                                            ("52:54:00:Aa:00:01", "52:54:00:aA:00:01")])
def test_mac_matching_is_case_insensitive_and_normalized(vz_mac, dev_mac):
    xml = domain_xml("ct", interfaces=[routed(dev_mac, ["198.51.100.7"])])
    xml = xml.replace(f'<vz:interface mac="{dev_mac}"'.encode(),
                      f'<vz:interface mac="{vz_mac}"'.encode())
    (i,) = parse_domain(xml).interfaces
    assert i.mac == M1 and i.mode is Mode.ROUTED


@pytest.mark.parametrize("driver,dtype,mode", [("lxc", "lxc", Mode.ROUTED),
                                               ("qemu", "qemu", Mode.BRIDGED),
                                               ("qemu", "kvm", Mode.BRIDGED)])
def test_default_mode(driver, dtype, mode):
    iface = {"mac": M1, "type": "ethernet", "vz": {"ips": ["198.51.100.7"]}}
    d = parse_domain(domain_xml("g", driver=dtype, interfaces=[iface]), driver=Driver(driver))
    assert d.interfaces[0].mode is mode
    assert d.interfaces[0].bridge is None  # bridged: the host config's bridge, at plan time


def test_bridged_interfaces():
    xml = domain_xml("vm", driver="kvm", interfaces=[
        {"mac": M1, "type": "ethernet", "vz": {"mode": "bridged", "bridge": "br1",
                                               "filter": "mac-ip", "isolated": "yes",
                                               "ips": ["198.51.100.7"]}},
        {"mac": M2, "type": "bridge", "source_bridge": "br0",
         "vz": {"mode": "bridged", "filter": "mac"}},
    ])
    a, b = parse_domain(xml).interfaces
    assert (a.mode, a.bridge, a.filter, a.isolated, a.plugged_by_libvirt) == \
        (Mode.BRIDGED, "br1", Filter.MAC_IP, True, False)
    assert [str(g) for g in a.ips] == ["198.51.100.7"]
    assert (b.mode, b.bridge, b.filter, b.plugged_by_libvirt) == \
        (Mode.BRIDGED, "br0", Filter.MAC, True)


def test_duplicate_device_macs_without_vz_are_fine():
    xml = domain_xml("vm", driver="qemu", interfaces=[{"mac": M1}, {"mac": M1}])
    assert len(parse_domain(xml).interfaces) == 2


def test_uuid_is_normalized_and_required_only_when_asked():
    xml = domain_xml("ct", uuid="{0F6C7A3E-5F43-4C1E-9A55-3B1B8C2D9E10}")
    assert parse_domain(xml).uuid == UUID
    no_uuid = b"<domain type='lxc'><name>ct</name></domain>"
    assert parse_domain(no_uuid).uuid is None
    assert refused(no_uuid, require_uuid=True).line() == \
        "vzlibvirt: domain 'ct': domain XML has no <uuid>"


def test_forced_driver_must_match():
    xml = domain_xml("vm", driver="kvm")
    assert parse_domain(xml, driver=Driver.QEMU).driver is Driver.QEMU
    assert "does not match the lxc driver" in refused(xml, driver=Driver.LXC).line()


def test_custom_gateways_are_refused_as_guest_ips():
    gw = (ip("10.255.255.1"), ip("fd00::1"))
    for addr in ("10.255.255.1", "fd00::1"):
        xml = domain_xml("ct", interfaces=[routed(M1, [addr])])
        assert f"IP {addr} is the routed gateway address" in refused(xml, gateways=gw).line()
    # with custom gateways, 169.254.0.1 is still refused, as a link-local address
    xml = domain_xml("ct", interfaces=[routed(M1, ["169.254.0.1"])])
    assert "IP 169.254.0.1 is a link-local address" in refused(xml, gateways=gw).line()


@pytest.mark.parametrize("name", ["a;rm -rf /", "$(reboot)", "`id`", "контейнер-🚀",
                                  "x' || true; '", "tab\there"])
def test_hostile_names_are_plain_data(name):
    esc = name.replace("&", "&amp;").replace("<", "&lt;")
    xml = domain_xml("placeholder", interfaces=[routed(M1, ["198.51.100.7"],
                                                       target="$(x);`y`|z")])
    d = parse_domain(xml.replace(b"placeholder", esc.encode()))
    assert d.name == name
    assert d.interfaces[0].host_dev == "$(x);`y`|z"


def test_ipv6_forms_are_normalized():
    xml = domain_xml("vm", driver="kvm", interfaces=[
        routed(M1, ["2001:DB8:0:0::0:7", " 198.51.100.7 "])])
    assert [str(g) for g in parse_domain(xml).interfaces[0].ips] == ["2001:db8::7",
                                                                     "198.51.100.7"]


def test_size_limit_boundary():
    base = domain_xml("ct", interfaces=[routed(M1, ["198.51.100.7"])])
    fill = MAX_XML_BYTES - len(base) - len(b"<!---->")
    at_limit = base.replace(b"<devices>", b"<!--" + b"x" * fill + b"--><devices>")
    assert len(at_limit) == MAX_XML_BYTES
    assert parse_domain(at_limit).interfaces[0].mode is Mode.ROUTED
    over = at_limit.replace(b"<!--", b"<!-- ")
    assert f"larger than {MAX_XML_BYTES} bytes" in refused(over).line()


def test_comments_and_processing_instructions_are_ignored():
    xml = example().replace(b'<vz:interface mac="52:54:00:aa:00:02"',
                            b'<!-- c --><?pi x?><vz:interface mac="52:54:00:aa:00:02"')
    assert parse_domain(xml).interfaces[1].mode is Mode.BRIDGED


def test_utf8_bom_and_declaration_are_accepted():
    xml = b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n' + example()
    assert parse_domain(xml).name == "ct101"


# --- the corpus, in-process: the same refusals without the CLI ----------------------------

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus_in_process(case):
    err = refused((CORPUS / case["file"]).read_bytes(),
                  driver=Driver(case.get("driver", "lxc")), require_uuid=True)
    assert type(err) is VzError
    line = err.line()
    assert case["reason"] in line
    assert err.mac == case.get("mac")
    if case.get("named", True):
        assert err.domain == case["domain"]
    else:
        assert err.domain is None
    assert "\n" not in line and line.isprintable()
