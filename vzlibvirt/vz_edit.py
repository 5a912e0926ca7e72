"""Pure: what `vzlibvirt set` changes in a domain's XML, validated by the hook's own rules.

The change is applied to copies of the domain's persistent and live XML, and each result
goes through parse_domain, so `set` refuses exactly what the hook would refuse at the
next start, before libvirt is touched. The outputs are the new `<vz:network>` element
(what libvirt's setMetadata takes) and, for a container's persistent definition, the
whole new XML: there an added IP becomes a native `<ip prefix='32|128'/>`, because that
is the form with which libvirt also configures the address inside the container at its
next start (a `<vz:ip>` on a container wires the host side only).
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

from lxml import etree

from vzlibvirt.addresses import AddressError, parse_mac
from vzlibvirt.contract import XMLNS
from vzlibvirt.domain_xml import parse_domain, parse_xml_bytes
from vzlibvirt.errors import VzError
from vzlibvirt.model import Domain, Driver, IPAddress, Mode

NS = f"{{{XMLNS}}}"
ALL = "all"


@dataclass(frozen=True)
class Change:
    """The options of one `vzlibvirt set` call."""

    iface: str | None = None
    ipadd: tuple[str, ...] = ()
    ipdel: tuple[str, ...] = ()
    mode: str | None = None
    bridge: str | None = None
    filter: str | None = None


@dataclass
class Edited:
    """One edited document: the new XML, its model and the new <vz:network> element."""

    xml: bytes
    domain: Domain
    metadata: str | None  # None: no <vz:network> left
    devices_changed: bool = False  # the device <interface> changed (needs defineXML)


@dataclass
class Edit:
    mac: str
    config: Edited | None  # None: the interface is not in the persistent definition
    live: Edited | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    guest_dev: str | None = None


def plan_edit(config_xml: bytes, live_xml: bytes | None, change: Change,
              gateways: tuple[IPAddress, ...]) -> Edit:
    """The edit of both documents; a VzError (one line, domain and MAC named) refuses."""
    current = parse_domain(live_xml or config_xml, gateways=gateways)
    try:
        mac = _pick_interface(current, change)
        adds = [_ip(text, gateways) for text in change.ipadd]
        dels = [text if text == ALL else _ip(text, gateways) for text in change.ipdel]
        iface = next(i for i in current.interfaces if i.mac == mac)
        have = {str(ip.address) for ip in iface.ips}
        for ip in adds:
            if ip in have:
                raise VzError(f"the interface already has IP {ip}")
        if len(set(adds)) != len(adds):
            raise VzError("an IP is given twice to --ipadd")
        in_config = _has_device(config_xml, mac)
        if live_xml is None and not in_config:
            raise VzError(f"the domain has no interface with MAC {mac}")
        # an IP to delete may be in one document only (added while stopped, say)
        known = have | (_ips_of(config_xml, mac, gateways) if in_config else set())
        for ip in dels:
            if ip != ALL and ip not in known:
                raise VzError(f"the interface has no IP {ip}")
        config = _edit(config_xml, current.driver, mac, adds, dels, change, gateways,
                       persistent=True) if in_config else None
        live = None if live_xml is None else _edit(
            live_xml, current.driver, mac, adds, dels, change, gateways, persistent=False)
    except VzError as exc:
        raise exc.with_context(domain=current.name, mac=_label(change)) from None
    after = live or config
    assert after is not None
    new = next(i for i in after.domain.interfaces if i.mac == mac)
    now = {str(ip.address) for ip in new.ips}
    return Edit(mac=mac, config=config, live=live,
                added=sorted(now - have, key=_sort), removed=sorted(have - now, key=_sort),
                guest_dev=new.guest_dev)


def _has_device(data: bytes, mac: str) -> bool:
    """Whether the document has a device <interface> with this MAC (a live-only
    hot-plugged interface is not in the persistent definition)."""
    try:
        _device(parse_xml_bytes(data), mac)
    except VzError:
        return False
    return True


def _ips_of(data: bytes, mac: str, gateways) -> set[str]:
    domain = parse_domain(data, gateways=gateways)
    return {str(ip.address) for i in domain.interfaces if i.mac == mac for ip in i.ips}


def _label(change: Change) -> str | None:
    return change.iface


def _sort(ip: str):
    addr = ipaddress.ip_address(ip)
    return (addr.version, addr)


def _ip(text: str, gateways) -> str:
    from vzlibvirt.addresses import parse_guest_ip

    try:
        return str(parse_guest_ip(text, gateways))
    except AddressError as exc:
        raise VzError(str(exc)) from None


def _pick_interface(domain: Domain, change: Change) -> str:
    """--iface, or the one routed interface, or the one interface of the domain."""
    if change.iface:
        try:
            mac = parse_mac(change.iface)
        except AddressError as exc:
            raise VzError(str(exc)) from None
        if not any(i.mac == mac for i in domain.interfaces):
            raise VzError(f"the domain has no interface with MAC {mac}")
        return mac
    routed = domain.routed_interfaces
    if len(routed) == 1 and routed[0].mac:
        return routed[0].mac
    if not routed and len(domain.interfaces) == 1 and domain.interfaces[0].mac:
        return domain.interfaces[0].mac
    raise VzError("the domain has several interfaces: name one with --iface MAC")


def _edit(data: bytes, driver: Driver, mac: str, adds: list[str], dels: list, change: Change,
          gateways, *, persistent: bool) -> Edited:
    root = copy.deepcopy(parse_xml_bytes(data))
    device = _device(root, mac)
    vz_iface = _vz_interface(root, mac)
    if vz_iface.get("mode") is None and change.mode is None and adds \
            and device.get("type") == "ethernet" and not len(vz_iface):
        vz_iface.set("mode", Mode.ROUTED.value)  # `set --ipadd` on a plain interface: venet
    native = {_norm(el.get("address")): el for el in device.findall("ip")}
    vz_ips = {_norm(el.get("address")): el for el in vz_iface.findall(f"{NS}ip")}
    for attr, value in (("mode", change.mode), ("bridge", change.bridge),
                        ("filter", change.filter)):
        if value is not None:
            vz_iface.set(attr, value)
    mode = vz_iface.get("mode") or ("routed" if driver is Driver.LXC else "bridged")
    if (adds or dels) and vz_iface.get("mode") is None:
        vz_iface.set("mode", mode)  # an explicit mode: the IPs are routed ones
    as_native = persistent and driver is Driver.LXC and mode == Mode.ROUTED.value \
        and device.get("type") == "ethernet"
    devices_changed = False
    targets = list(native) + list(vz_ips) if ALL in dels else [d for d in dels if d != ALL]
    for ip in targets:
        if ip in vz_ips:
            vz_iface.remove(vz_ips[ip])
        elif ip in native:
            if not persistent:
                raise VzError(f"IP {ip} comes from the interface's own <ip> element, which "
                              "libvirt cannot change while the container runs: it is removed "
                              "from the persistent definition only; restart the container")
            device.remove(native[ip])
            devices_changed = True
    for ip in adds:
        if as_native:
            _add_native(device, ip, gateways)
            devices_changed = True
        else:
            etree.SubElement(vz_iface, f"{NS}ip", address=ip)
    xml = etree.tostring(root)
    domain = parse_domain(xml, gateways=gateways)
    meta = root.find(f"metadata/{NS}network")
    return Edited(xml=xml, domain=domain, metadata=_metadata_text(meta),
                  devices_changed=devices_changed)


def _norm(text: str | None) -> str:
    try:
        return str(ipaddress.ip_address(text or ""))
    except ValueError:
        return text or ""


def _device(root, mac: str):
    for dev in root.iterfind("devices/interface"):
        el = dev.find("mac")
        if el is not None and (el.get("address") or "").lower() == mac:
            return dev
    raise VzError(f"the domain has no interface with MAC {mac}")


def _vz_interface(root, mac: str):
    """The <vz:interface> of `mac`, made (with <metadata> and <vz:network>) if missing."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        name = root.find("name")
        pos = list(root).index(name) + 1 if name is not None else 0
        uuid = root.find("uuid")
        if uuid is not None:
            pos = max(pos, list(root).index(uuid) + 1)
        root.insert(pos, metadata)
    network = metadata.find(f"{NS}network")
    if network is None:
        network = etree.SubElement(metadata, f"{NS}network", nsmap={"vz": XMLNS})
    for el in network.iterfind(f"{NS}interface"):
        if (el.get("mac") or "").lower() == mac:
            return el
    return etree.SubElement(network, f"{NS}interface", mac=mac)


def _add_native(device, ip: str, gateways) -> None:
    """An LXC routed address as libvirt wants it: /32 with the gateway as peer, or /128;
    the default route through the gateway is added when the family has none."""
    addr = ipaddress.ip_address(ip)
    gw4, gw6 = (str(g) for g in sorted(gateways, key=lambda g: g.version))
    attrs = {"address": ip, "prefix": "32"} if addr.version == 4 else \
        {"address": ip, "prefix": "128"}
    if addr.version == 4:
        attrs["peer"] = gw4
    existing = device.findall("ip")
    el = etree.Element("ip", **attrs)
    if existing:
        existing[-1].addnext(el)
    else:
        anchor = device.find("guest") if device.find("guest") is not None else device.find("mac")
        anchor.addnext(el)
    family = "ipv4" if addr.version == 4 else "ipv6"
    if not any(r.get("family") == family for r in device.findall("route")):
        el.addnext(etree.Element("route", family=family,
                                 address="0.0.0.0" if addr.version == 4 else "::",
                                 prefix="0", gateway=gw4 if addr.version == 4 else gw6))


def _metadata_text(network) -> str | None:
    """The <vz:network> element as setMetadata takes it: libvirt puts it (and every child)
    into the namespace given with the call, so the text carries no namespace."""
    if network is None or len(network) == 0:
        return None
    plain = copy.deepcopy(network)
    for el in plain.iter():
        if isinstance(el.tag, str) and el.tag.startswith(NS):
            el.tag = el.tag[len(NS):]
    etree.cleanup_namespaces(plain)
    return etree.tostring(plain).decode()


def current_metadata(data: bytes) -> str | None:
    """The domain's <vz:network> as setMetadata takes it (None when it has none)."""
    return _metadata_text(parse_xml_bytes(data).find(f"metadata/{NS}network"))
