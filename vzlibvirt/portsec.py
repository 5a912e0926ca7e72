"""Port security for bridged guests: one nftables table, elements keyed by port.

The table `bridge vzlibvirt` is constant; guests only add and remove elements:

  map ports      ifindex : jump mac_check | jump ip_check   which ports are filtered, how
  set port_mac   ifindex . MAC                              the MAC each port may send from
  set port_ip4   ifindex . IPv4                             the addresses each port may use
  set port_ip6   ifindex . IPv6                             (mac-ip), own EUI-64 link-local

Every frame entering the bridge costs one hash lookup in `ports` (frames of unfiltered
ports, the uplink's included, stop there); a filtered port's frame costs a few more
lookups in hashed sets. Nothing grows with the number of guests, and removing a guest
removes only its elements. Keys are ifindexes, not names: a name is reused by the next
guest, an ifindex is not, so a leftover element can never apply to another guest.

The ruleset text is a constant in nft's own syntax (readable, reviewed here and in
docs/bridged.md) loaded in one transaction; every element, which carries guest data,
goes through the JSON API so no input is ever spliced into nft syntax.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, ClassVar

from vzlibvirt.entries import Entry, register
from vzlibvirt.model import Filter
from vzlibvirt.nftlib import SetElement, SetTable, ifindex_key

FAMILY = "bridge"
TABLE = "vzlibvirt"
CHAIN_FOR = {Filter.MAC: "mac_check", Filter.MAC_IP: "ip_check"}

RULESET = f"""
table {FAMILY} {TABLE} {{
  comment "vzlibvirt bridged port security, layout 1 (see docs/bridged.md)"
  map ports {{ type iface_index : verdict; }}
  set port_mac {{ type iface_index . ether_addr; }}
  set port_ip4 {{ type iface_index . ipv4_addr; }}
  set port_ip6 {{ type iface_index . ipv6_addr; }}
  chain mac_check {{
    iif . ether saddr != @port_mac counter drop
    ether type arp iif . arp saddr ether != @port_mac counter drop
  }}
  chain ip_check {{
    jump mac_check
    ether type arp arp saddr ip 0.0.0.0 return
    ether type arp iif . arp saddr ip != @port_ip4 counter drop
    ip saddr 0.0.0.0 udp sport 68 udp dport 67 return
    ether type ip iif . ip saddr != @port_ip4 counter drop
    icmpv6 type nd-router-advert counter drop
    ip6 saddr :: return
    ether type ip6 iif . ip6 saddr != @port_ip6 counter drop
    ether type != {{ arp, ip, ip6 }} counter drop
  }}
  chain prerouting {{
    type filter hook prerouting priority -200; policy accept;
    iif vmap @ports
  }}
}}
"""

TABLE_OBJ = SetTable(FAMILY, TABLE, RULESET)


def ensure_table() -> bool:
    """Create our table if it is missing; True when this call created it."""
    return TABLE_OBJ.ensure()


def eui64_link_local(mac: str) -> ipaddress.IPv6Address:
    """The IPv6 link-local address a guest forms from its MAC (modified EUI-64)."""
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid)


class _Element(SetElement):
    """An element of one of our port-security sets."""

    table: ClassVar[SetTable] = TABLE_OBJ


@dataclass(frozen=True)
class PortFilter(_Element):
    """The port's entry in `ports`: which check its frames go through."""

    kind: ClassVar[str] = "port-filter"
    set_name: ClassVar[str] = "ports"
    dev: str
    ifindex: int
    filter: str

    def key(self) -> bytes:
        return ifindex_key(self.ifindex)

    def elem(self) -> Any:
        return [self.ifindex, {"jump": {"target": CHAIN_FOR[Filter(self.filter)]}}]

    def describe(self) -> str:
        return f"port security filter={self.filter} on {self.dev} (ifindex {self.ifindex})"


@dataclass(frozen=True)
class PortMac(_Element):
    kind: ClassVar[str] = "port-mac"
    set_name: ClassVar[str] = "port_mac"
    dev: str
    ifindex: int
    mac: str

    def key(self) -> bytes:
        return ifindex_key(self.ifindex) + bytes.fromhex(self.mac.replace(":", "")) + b"\0\0"

    def elem(self) -> Any:
        return {"concat": [self.ifindex, self.mac]}

    def describe(self) -> str:
        return f"allowed MAC {self.mac} on {self.dev}"


@dataclass(frozen=True)
class PortIP(_Element):
    kind: ClassVar[str] = "port-ip"
    dev: str
    ifindex: int
    address: str

    @property
    def set_name(self) -> str:  # type: ignore[override]
        return "port_ip6" if ":" in self.address else "port_ip4"

    def key(self) -> bytes:
        return ifindex_key(self.ifindex) + ipaddress.ip_address(self.address).packed

    def elem(self) -> Any:
        return {"concat": [self.ifindex, self.address]}

    def describe(self) -> str:
        return f"allowed IP {self.address} on {self.dev}"


for _cls in (PortFilter, PortMac, PortIP):
    register(_cls)


def port_security_entries(dev: str, ifindex: int, filt: Filter, mac: str | None,
                          ips: list[str]) -> list[Entry]:
    """Allowed values first, the port's filter last: the filter never applies to a port
    whose allowed values are not all in place yet."""
    if filt is Filter.NONE:
        return []
    if not mac:
        raise ValueError("port security needs the interface's MAC")
    out: list[Entry] = [PortMac(dev, ifindex, mac)]
    if filt is Filter.MAC_IP:
        out += [PortIP(dev, ifindex, ip) for ip in ips]
        out.append(PortIP(dev, ifindex, str(eui64_link_local(mac))))
    out.append(PortFilter(dev, ifindex, filt.value))
    return out
