"""Domain XML as libvirt hands it to hooks, for tests (and the same shape as the docs)."""

from __future__ import annotations

import uuid as uuidlib
from xml.sax.saxutils import quoteattr

from vzlibvirt.contract import XMLNS as VZNS


def domain_xml(
    name: str,
    *,
    driver: str = "lxc",
    interfaces: list[dict] | None = None,
    uuid: str | None = None,
) -> bytes:
    """interfaces: dicts with mac, type (ethernet), target, guest, vz (None or dict with
    mode, ips, bridge, filter, isolated), native (list of (ip, prefix)), source_bridge."""
    uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{driver}.{name}"))
    dtype = {"lxc": "lxc", "qemu": "qemu", "kvm": "kvm"}[driver]
    vz_parts = []
    dev_parts = []
    for i in interfaces or []:
        vz = i.get("vz")
        if vz is not None:
            attrs = f" mac={quoteattr(i['mac'])}"
            for key in ("mode", "bridge", "filter", "isolated"):
                if vz.get(key) is not None:
                    attrs += f" {key}={quoteattr(vz[key])}"
            ips = "".join(f"<vz:ip address={quoteattr(ip)}/>" for ip in vz.get("ips", []))
            vz_parts.append(f"<vz:interface{attrs}>{ips}</vz:interface>")
        body = f"<mac address={quoteattr(i['mac'])}/>"
        if i.get("source_bridge"):
            body += f"<source bridge={quoteattr(i['source_bridge'])}/>"
        if i.get("target"):
            body += f"<target dev={quoteattr(i['target'])}/>"
        if i.get("guest"):
            body += f"<guest dev={quoteattr(i['guest'])}/>"
        for ip, prefix in i.get("native", []):
            fam = "ipv6" if ":" in ip else "ipv4"
            body += f"<ip address={quoteattr(ip)} family='{fam}' prefix='{prefix}'/>"
        dev_parts.append(f"<interface type={quoteattr(i.get('type', 'ethernet'))}>{body}"
                         f"</interface>")
    meta = ""
    if vz_parts:
        meta = (f"<metadata><vz:network xmlns:vz=\"{VZNS}\">{''.join(vz_parts)}"
                f"</vz:network></metadata>")
    return (f"<domain type='{dtype}' id='1'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n"
            f"  {meta}\n  <memory unit='KiB'>65536</memory>\n"
            f"  <devices>{''.join(dev_parts)}</devices>\n</domain>\n").encode()


def routed(mac: str, ips: list[str], target: str | None = None, guest: str = "venet0",
           native: bool = False) -> dict:
    """A routed interface: with native=True as an LXC container's native <ip> elements."""
    iface = {"mac": mac, "type": "ethernet", "target": target, "guest": guest}
    if native:
        iface["native"] = [(ip, 128 if ":" in ip else 32) for ip in ips]
    else:
        iface["vz"] = {"mode": "routed", "ips": ips}
    return iface


def bridged(mac: str, target: str | None = None, guest: str | None = "netif1",
            ips: list[str] | None = None, filter: str | None = None,
            isolated: str | None = None, bridge: str | None = None,
            type: str = "ethernet", source_bridge: str | None = None,
            mode: str | None = "bridged") -> dict:
    """A bridged interface: type='ethernet' (we plug it) or type='bridge' (libvirt does)."""
    vz = {"mode": mode, "ips": ips or [], "filter": filter, "isolated": isolated,
          "bridge": bridge}
    iface = {"mac": mac, "type": type, "target": target, "guest": guest, "vz": vz}
    if source_bridge:
        iface["source_bridge"] = source_bridge
    return iface
