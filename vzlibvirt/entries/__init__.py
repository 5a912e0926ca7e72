"""Host entries: one object per thing vzlibvirt puts on the host, by kind.

  base     the Entry contract (present / add / remove / snapshot / restore, to JSON)
  kernel   sysctls, link up, MTU, addresses, routes, proxy neighbours
  bridge   bridge ports and their isolated flag
  nft      elements of our nftables sets (port security, IPv6 reverse-path filter)
  dhcp     a line of dnsmasq's hosts file

ENTRY_TYPES is the one static table of every kind a state record may name: loading a
record needs no mode module and importing a module never registers anything.
"""

from __future__ import annotations

from typing import Any

from vzlibvirt.entries.base import DeviceEntry, Entry
from vzlibvirt.entries.bridge import BridgePort, PortIsolated
from vzlibvirt.entries.dhcp import DhcpHost
from vzlibvirt.entries.kernel import (
    Address,
    AnnouncedRoute,
    DeviceSysctl,
    HostSysctl,
    LinkMtu,
    LinkUp,
    ProxyNeighbour,
    Route,
)
from vzlibvirt.entries.nft import PortFilter, PortIP, PortMac, RoutedPort6

__all__ = [
    "ENTRY_TYPES", "Address", "AnnouncedRoute", "BridgePort", "DeviceEntry", "DeviceSysctl",
    "DhcpHost", "Entry", "HostSysctl", "LinkMtu", "LinkUp", "PortFilter", "PortIP", "PortIsolated",
    "PortMac", "ProxyNeighbour", "Route", "RoutedPort6", "entry_from_json",
]

ENTRY_TYPES: dict[str, type[Entry]] = {cls.kind: cls for cls in (
    HostSysctl, DeviceSysctl, LinkUp, LinkMtu, Address, Route, AnnouncedRoute, ProxyNeighbour,
    BridgePort, PortIsolated,
    PortFilter, PortMac, PortIP, RoutedPort6,
    DhcpHost,
)}


def entry_from_json(data: dict[str, Any]) -> Entry:
    data = dict(data)
    kind = data.pop("kind", "")
    cls = ENTRY_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown entry kind {kind!r} in state: {data!r}")
    return cls(**data)
