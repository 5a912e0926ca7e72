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
    if _prolog_declares_dtd(data):
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


def _prolog_declares_dtd(data: bytes) -> bool:
    """Does a DOCTYPE come before the root element? Entities can only be declared there.
    Only the prolog is scanned (XML declaration, comments, PIs, blanks), so the text
    `<!DOCTYPE` in a comment or CDATA of another tool's <metadata> is just text."""
    pos, end = 0, len(data)
    while pos < end:
        if data[pos:pos + 1].isspace():
            pos += 1
        elif data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 4)
            if close < 0:
                return False  # unterminated: the parser refuses it as malformed
            pos = close + 3
        elif data.startswith(b"<?", pos):
            close = data.find(b"?>", pos + 2)
            if close < 0:
                return False
            pos = close + 2
        else:
            return data[pos:pos + 9].upper() in (b"<!DOCTYPE", b"<!ENTITY")
    return False


def parse_domain(
    data: bytes,
    *,
    driver: Driver | None = None,
    gateways: tuple[IPAddress, ...] = DEFAULT_GATEWAYS,
    require_uuid: bool = False,
    unplugged_ok: bool = False,
) -> Domain:
    """The Domain that `data` (libvirt's domain XML) describes, or a VzError.

    `unplugged_ok`: a `<vz:interface>` whose MAC matches no device is skipped instead of
    refused: the agent's view of a running guest, whose metadata may name an interface
    before it is hot-plugged or after it was detached."""
    root = parse_xml_bytes(data)
    if root.tag != "domain":
        raise VzError(f"expected a <domain> document, got <{_local(root.tag)}>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise VzError("domain XML has no <name>")
    try:
        return _DomainParser(root, name, driver, gateways, require_uuid,
                             unplugged_ok).parse()
    except VzError as exc:
        raise exc.with_context(domain=name) from None


class _DomainParser:
    def __init__(self, root, name, driver, gateways, require_uuid, unplugged_ok=False):
        self.unplugged_ok = unplugged_ok
        self.root = root
        self.name = name
        self.forced_driver = driver
        self.gateways = tuple(gateways)
        self.require_uuid = require_uuid

    def parse(self) -> Domain:
        vz = self._vz_interfaces()
        devices = self._device_interfaces()
        lxc = self._lxc_hint()
        if not vz and all(_routed_by_default(lxc, d, self.gateways) for d in devices):
            return self._foreign(devices, lxc)
        driver = self._driver()
        uuid = self._uuid()
        interfaces = self._join(driver, devices, vz)
        self._check_unique_ips(interfaces)
        return Domain(driver=driver, name=self.name, uuid=uuid, interfaces=interfaces)

    def _lxc_hint(self) -> bool:
        return self.root.get("type") == "lxc" and self.forced_driver in (None, Driver.LXC)

    def _foreign(self, devices: list[etree._Element], lxc: bool) -> Domain:
        """No <vz:network> and no interface written for our routing: nothing here is ours,
        so nothing is validated (libvirt has accepted the domain; installing vzlibvirt
        must never stop it from starting)."""
        driver = _DOMAIN_TYPES.get(self.root.get("type", "")) or self.forced_driver \
            or Driver.QEMU
        interfaces = tuple(
            Interface(index=i, mac=_lenient_mac(dev), type=dev.get("type", ""),
                      note=_routed_by_default(lxc, dev, self.gateways),
                      bridge=_lenient_ifname(dev.find("source"), "bridge"),
                      source_network=_source_network(dev))
            for i, dev in enumerate(devices))
        return Domain(driver=driver, name=self.name, uuid=_lenient_uuid(self.root),
                      interfaces=interfaces)

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
        found = _libvirt_uuid(text)
        if found is None:
            raise VzError(f"invalid <uuid> {text[:60]!r}")
        return found

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
            mac = _lenient_mac(dev)
            if mac is not None and mac in vz and mac in by_mac:
                raise VzError("two device <interface> elements have this MAC", mac=mac)
            if mac is not None:
                by_mac[mac] = index
            try:
                result.append(self._interface(driver, index, mac, dev, vz.get(mac)))
            except VzError as exc:
                raise exc.with_context(mac=mac or f"#{index}") from None
        for mac in vz:
            if mac not in by_mac and not self.unplugged_ok:
                raise VzError("<vz:interface> matches no device <interface>", mac=mac)
        return tuple(result)

    def _interface(self, driver, index, mac, dev, vz_el) -> Interface:
        itype = dev.get("type", "")
        native = dev.findall("ip")
        if vz_el is None:
            note = _routed_by_default(driver is Driver.LXC, dev, self.gateways)
            if note is not None:  # not ours: not validated at all
                return Interface(index=index, mac=mac, type=itype, note=note,
                                 bridge=_lenient_ifname(dev.find("source"), "bridge"),
                                 source_network=_source_network(dev))
        if mac is None:
            raise VzError("invalid or missing MAC address on a routed interface")
        host_dev = _opt_ifname(dev.find("target"), "dev", "target dev", template=True)
        guest_dev = _opt_ifname(dev.find("guest"), "dev", "guest dev")
        guest_actual = _opt_ifname(dev.find("guest"), "actual", "guest actual")
        source = dev.find("source")
        source_bridge = _opt_ifname(source, "bridge", "source bridge")
        source_network = _source_network(dev)
        base = dict(index=index, mac=mac, type=itype, host_dev=host_dev, guest_dev=guest_dev,
                    guest_actual=guest_actual)

        if vz_el is None:  # an LXC interface written for host-routed mode (the default)
            return Interface(**base, mode=Mode.ROUTED,
                             ips=self._native_ips(native, routed=True))

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


def _lenient_mac(dev: etree._Element) -> str | None:
    """A device's MAC, normalised as libvirt does; None when absent or unparseable (such
    an interface can match no <vz:interface>, so it is simply not ours)."""
    el = dev.find("mac")
    try:
        return parse_mac(el.get("address") or "") if el is not None else None
    except AddressError:
        return None


def _libvirt_uuid(text: str) -> str | None:
    """libvirt's virUUIDParse: 32 hex digits in pairs, '-' or ' ' anywhere between pairs,
    blanks around; the canonical form, or None."""
    s = text.strip()
    digits = []
    i = 0
    while i < len(s):
        if s[i] in "- ":
            i += 1
            continue
        pair = s[i:i + 2]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            digits = []
            break
        digits.append(pair)
        i += 2
    try:
        return canonical_uuid("".join(digits) if len(digits) == 16 else s)  # or {braces}
    except ValueError:
        return None


def _lenient_ifname(el: etree._Element | None, attr: str) -> str | None:
    """A name of a foreign interface, for the record only: None when not a valid one."""
    try:
        return _opt_ifname(el, attr, attr)
    except VzError:
        return None


def _source_network(dev: etree._Element) -> str | None:
    source = dev.find("source")
    return source.get("network") if source is not None else None


def _lenient_uuid(root: etree._Element) -> str | None:
    return _libvirt_uuid(root.findtext("uuid") or "")


def _looks_routed(lxc: bool, dev: etree._Element) -> bool:
    """An LXC `type='ethernet'` interface with native <ip>: maybe written for us."""
    return lxc and dev.get("type") == "ethernet" and dev.find("ip") is not None


def _routed_by_default(lxc: bool, dev: etree._Element,
                       gateways: tuple[IPAddress, ...]) -> str | None:
    """None when the interface, having no <vz:interface>, is ours (host-routed, the
    container default); else why it is left alone (contract, "Domain XML")."""
    if not _looks_routed(lxc, dev):
        return "no <vz:interface>"
    source = dev.find("source")
    if source is not None and source.find("ip") is not None:
        return "it uses libvirt's own host-side addressing (<source><ip>)"
    for el in dev.findall("ip"):
        addr, prefix, peer = el.get("address") or "", el.get("prefix"), el.get("peer")
        want = "128" if ":" in addr else "32"
        if prefix != want:
            shown = f"/{prefix}" if prefix is not None else " without a prefix"
            return f"native <ip> {addr}{shown} is not a host address (/{want})"
        if peer is not None and _ip_or_none(peer) not in gateways:
            return f"native <ip> {addr} has peer {peer}, not the routed gateway"
    return None


def _ip_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _opt_ifname(el: etree._Element | None, attr: str, what: str,
                template: bool = False) -> str | None:
    """An interface name; with TEMPLATE, libvirt's `vnet%d` style is accepted and taken as
    not yet known (libvirt fills the number in when it creates the device, by `start`)."""
    if el is None or el.get(attr) is None:
        return None
    name = el.get(attr)
    try:
        if template and "%d" in name:
            try:
                parse_ifname(name.replace("%d", "0"), what)
            except AddressError:
                raise AddressError(f"{what} {name!r} is not a valid interface name") from None
            return None
        return parse_ifname(name, what)
    except AddressError as exc:
        raise VzError(str(exc)) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else "?"


def _pretty(tag: str) -> str:
    return ("vz:" + tag[len(NS):]) if tag.startswith(NS) else _local(tag)
