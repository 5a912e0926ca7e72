"""Parse the domain XML that libvirt hands a hook into the typed model.

Domain XML comes from users, so the parser is strict and hostile-input safe: a size
limit, no DTD or entities at all, no network, and every rule of the contract checked
here so that later stages can trust the model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from lxml import etree

from vzlibvirt.addresses import AddressError, parse_guest_ip, parse_ifname, parse_mac
from vzlibvirt.contract import GATEWAY4, GATEWAY6, MAX_XML_BYTES, XMLNS, canonical_uuid
from vzlibvirt.errors import VzError
from vzlibvirt.model import (
    Domain,
    Driver,
    Filter,
    GuestIP,
    Interface,
    IPAddress,
    IPSource,
    Mode,
)

NS = f"{{{XMLNS}}}"
_DEFAULT_MODE = {Driver.LXC: Mode.ROUTED, Driver.QEMU: Mode.BRIDGED}
_DOMAIN_TYPES = {"lxc": Driver.LXC, "kvm": Driver.QEMU, "qemu": Driver.QEMU}
_VZ_IFACE_ATTRS = {"mac", "mode", "bridge", "filter", "isolated"}
DEFAULT_GATEWAYS: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address(GATEWAY4),
    ipaddress.IPv6Address(GATEWAY6),
)


def parse_xml_bytes(data: bytes) -> etree._Element:
    """Parse untrusted XML: refuse DTDs and entities before lxml sees them."""
    if len(data) > MAX_XML_BYTES:
        raise VzError(f"XML input is larger than {MAX_XML_BYTES} bytes")
    if not data.strip():
        raise VzError("no XML on standard input")
    head = data[:4096].lower()
    if b"<!doctype" in data.lower() or b"<!entity" in head:
        raise VzError("XML with a DOCTYPE or entity declarations is refused")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        encoding="utf-8",  # libvirt's XML is UTF-8: a UTF-16 DOCTYPE would pass the check above
    )
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "malformed XML"
        raise VzError(f"malformed XML: {msg}") from None
    if root is None:
        raise VzError("malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # defence in depth
        raise VzError("XML with a DOCTYPE or entity declarations is refused")
    return root


def parse_domain(
    data: bytes,
    *,
    driver: Driver | None = None,
    gateways: tuple[IPAddress, ...] = DEFAULT_GATEWAYS,
    require_uuid: bool = False,
) -> Domain:
    """The Domain that `data` (libvirt's domain XML) describes, or a VzError."""
    root = parse_xml_bytes(data)
    if root.tag != "domain":
        raise VzError(f"expected a <domain> document, got <{_local(root.tag)}>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise VzError("domain XML has no <name>")
    try:
        return _DomainParser(root, name, driver, gateways, require_uuid).parse()
    except VzError as exc:
        raise exc.with_context(domain=name) from None


class _DomainParser:
    def __init__(self, root, name, driver, gateways, require_uuid):
        self.root = root
        self.name = name
        self.forced_driver = driver
        self.gateways = tuple(gateways)
        self.require_uuid = require_uuid

    def parse(self) -> Domain:
        driver = self._driver()
        uuid = self._uuid()
        vz = self._vz_interfaces()
        devices = self._device_interfaces()
        interfaces = self._join(driver, devices, vz)
        self._check_unique_ips(interfaces)
        return Domain(driver=driver, name=self.name, uuid=uuid, interfaces=interfaces)

    def _driver(self) -> Driver:
        dtype = self.root.get("type", "")
        driver = _DOMAIN_TYPES.get(dtype)
        if driver is None:
            raise VzError(f"unsupported domain type {dtype!r} (expected lxc, kvm or qemu)")
        if self.forced_driver is not None and driver is not self.forced_driver:
            raise VzError(f"domain type {dtype!r} does not match the {self.forced_driver} driver")
        return driver

    def _uuid(self) -> str | None:
        text = (self.root.findtext("uuid") or "").strip()
        if not text:
            if self.require_uuid:
                raise VzError("domain XML has no <uuid>")
            return None
        try:
            return canonical_uuid(text)
        except ValueError:
            raise VzError(f"invalid <uuid> {text[:60]!r}") from None

    def _vz_interfaces(self) -> dict[str, etree._Element]:
        """The <vz:interface> elements by MAC, after checking the namespace's structure."""
        networks = self.root.findall(f"metadata/{NS}network")
        if not networks:
            return {}
        if len(networks) > 1:
            raise VzError("more than one <vz:network> element in <metadata>")
        found: dict[str, etree._Element] = {}
        for el in networks[0]:
            if el.tag != f"{NS}interface":
                raise VzError(f"unknown element <{_pretty(el.tag)}> in <vz:network>")
            raw_mac = el.get("mac")
            if raw_mac is None:
                raise VzError("<vz:interface> without a mac attribute")
            mac = _mac(raw_mac)
            if mac in found:
                raise VzError("two <vz:interface> elements for this MAC").with_context(mac=mac)
            for attr in el.attrib:
                if attr not in _VZ_IFACE_ATTRS:
                    raise VzError(f"unknown attribute {_pretty(attr)!r} on <vz:interface>",
                                  mac=mac)
            for child in el:
                if child.tag != f"{NS}ip":
                    raise VzError(f"unknown element <{_pretty(child.tag)}> in <vz:interface>",
                                  mac=mac)
                if set(child.attrib) != {"address"}:
                    raise VzError("<vz:ip> takes exactly one attribute, address", mac=mac)
            found[mac] = el
        return found

    def _device_interfaces(self) -> list[etree._Element]:
        return self.root.findall("devices/interface")

    def _join(self, driver, devices, vz) -> tuple[Interface, ...]:
        by_mac: dict[str, int] = {}
        result = []
        for index, dev in enumerate(devices):
            mac_el = dev.find("mac")
            mac = None
            if mac_el is not None and mac_el.get("address") is not None:
                try:
                    mac = _mac(mac_el.get("address"))
                except VzError as exc:
                    raise exc.with_context(mac=f"#{index}") from None
            if mac is not None and mac in vz and mac in by_mac:
                raise VzError("two device <interface> elements have this MAC", mac=mac)
            if mac is not None:
                by_mac[mac] = index
            try:
                result.append(self._interface(driver, index, mac, dev, vz.get(mac)))
            except VzError as exc:
                raise exc.with_context(mac=mac or f"#{index}") from None
        for mac in vz:
            if mac not in by_mac:
                raise VzError("<vz:interface> matches no device <interface>", mac=mac)
        return tuple(result)

    def _interface(self, driver, index, mac, dev, vz_el) -> Interface:
        itype = dev.get("type", "")
        host_dev = _opt_ifname(dev.find("target"), "dev", "target dev")
        guest_dev = _opt_ifname(dev.find("guest"), "dev", "guest dev")
        source = dev.find("source")
        source_bridge = _opt_ifname(source, "bridge", "source bridge")
        source_network = source.get("network") if source is not None else None
        base = dict(index=index, mac=mac, type=itype, host_dev=host_dev, guest_dev=guest_dev)
        native = dev.findall("ip")

        if vz_el is None:
            if driver is Driver.LXC and itype == "ethernet" and native:
                ips = self._native_ips(native, routed=True)
                return Interface(**base, mode=Mode.ROUTED, ips=ips)
            return Interface(**base, bridge=source_bridge, source_network=source_network)

        mode_text = vz_el.get("mode")
        if mode_text is None:
            mode = _DEFAULT_MODE[driver]
        else:
            try:
                mode = Mode(mode_text)
            except ValueError:
                raise VzError(f"unknown mode {mode_text!r} (expected routed or bridged)") from None
        if native and driver is Driver.QEMU:
            raise VzError("QEMU does not support interface <ip>; list VM IPs as <vz:ip>")
        vz_ips = tuple(GuestIP(self._ip(ip.get("address"))) for ip in vz_el)
        ips = vz_ips + self._native_ips(native, routed=mode is Mode.ROUTED)

        if mode is Mode.ROUTED:
            if itype != "ethernet":
                raise VzError(f"routed mode needs <interface type='ethernet'>, not {itype!r}")
            for attr in ("bridge", "filter", "isolated"):
                if vz_el.get(attr) is not None:
                    raise VzError(f"attribute {attr!r} is only valid with mode='bridged'")
            if not ips:
                raise VzError("routed interface has no IP address (add <vz:ip address=...>)")
            return Interface(**base, mode=mode, ips=ips)
        return self._bridged(base, itype, vz_el, ips, source_bridge, source_network)

    def _bridged(self, base, itype, vz_el, ips, source_bridge, source_network) -> Interface:
        bridge = _opt_ifname(vz_el, "bridge", "bridge")
        filt_text = vz_el.get("filter", "none")
        try:
            filt = Filter(filt_text)
        except ValueError:
            raise VzError(f"unknown filter {filt_text!r} (expected none, mac or mac-ip)") from None
        iso_text = vz_el.get("isolated", "no")
        if iso_text not in ("yes", "no"):
            raise VzError(f"isolated must be 'yes' or 'no', not {iso_text!r}")
        if filt is Filter.MAC_IP and not ips:
            raise VzError("filter='mac-ip' needs at least one <vz:ip>")
        common = dict(mode=Mode.BRIDGED, ips=ips, filter=filt, isolated=iso_text == "yes")
        if itype == "ethernet":
            return Interface(**base, bridge=bridge, **common)
        if itype in ("bridge", "network"):
            if bridge is not None and source_bridge is not None and bridge != source_bridge:
                raise VzError(f"bridge {bridge!r} differs from the interface's source bridge "
                              f"{source_bridge!r}")
            if itype == "bridge" and source_bridge is None:
                raise VzError("<interface type='bridge'> has no <source bridge=...>")
            if itype == "network" and not source_network:
                raise VzError("<interface type='network'> has no <source network=...>")
            return Interface(**base, bridge=source_bridge or bridge, plugged_by_libvirt=True,
                             source_network=source_network, **common)
        raise VzError(f"bridged mode needs interface type ethernet, bridge or network, "
                      f"not {itype!r}")

    def _ip(self, text: str | None) -> IPAddress:
        try:
            return parse_guest_ip(text or "", self.gateways)
        except AddressError as exc:
            raise VzError(str(exc)) from None

    def _native_ips(self, elements: Iterable[etree._Element], routed: bool) -> tuple[GuestIP, ...]:
        ips = []
        for el in elements:
            ip = self._ip(el.get("address"))
            prefix = el.get("prefix")
            if routed:
                want = 32 if ip.version == 4 else 128
                if prefix != str(want):
                    shown = f"/{prefix}" if prefix is not None else " without a prefix"
                    raise VzError(f"native <ip> {ip}{shown}: a routed address needs "
                                  f"prefix='{want}'")
            ips.append(GuestIP(ip, IPSource.NATIVE))
        return tuple(ips)

    def _check_unique_ips(self, interfaces: tuple[Interface, ...]) -> None:
        seen: set[IPAddress] = set()
        for iface in interfaces:
            for gip in iface.ips:
                if gip.address in seen:
                    raise VzError(f"IP {gip.address} is listed twice in this domain",
                                  mac=iface.label)
                seen.add(gip.address)


def _mac(text: str) -> str:
    try:
        return parse_mac(text)
    except AddressError as exc:
        raise VzError(str(exc)) from None


def _opt_ifname(el: etree._Element | None, attr: str, what: str) -> str | None:
    if el is None or el.get(attr) is None:
        return None
    try:
        return parse_ifname(el.get(attr), what)
    except AddressError as exc:
        raise VzError(str(exc)) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else "?"


def _pretty(tag: str) -> str:
    return ("vz:" + tag[len(NS):]) if tag.startswith(NS) else _local(tag)
