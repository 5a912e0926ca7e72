"""Bridged mode: the guest's host-side device is a port of a host bridge (seed 5.2.1.2,
5.2.2.1).

The guest owns its MAC, ARP table and routes; the host only plugs the device in. A
`type='ethernet'` interface is plugged by us (MTU matched to the bridge first, so the
bridge never lowers its own MTU, then enslaved and brought up); a `type='bridge'` (or
bridge-mode `type='network'`) interface is plugged by libvirt, and we only add what
libvirt does not do: port security (portsec.py) and the isolated flag.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from vzlibvirt.bridged_checks import missing_bridge_error
from vzlibvirt.entries import DeviceEntry, Entry, LinkUp, register
from vzlibvirt.errors import ConflictError, VzError
from vzlibvirt.model import Filter, Interface, Mode
from vzlibvirt.plan import bridge_for
from vzlibvirt.portsec import port_security_entries
from vzlibvirt.state import InterfaceRecord
from vzlibvirt.wiring import InterfaceWiring, WireContext
from vzlibvirt.wiring import register as register_plugin

SIOCGIFMTU = 0x8921


def device_mtu(name: str) -> int | None:
    """The MTU of `name` in this network namespace (one ioctl, for rollback snapshots)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            req = struct.pack("16si", name.encode()[:15], 0)
            return struct.unpack("16si", fcntl.ioctl(sock, SIOCGIFMTU, req))[1]
    except OSError:
        return None


@dataclass(frozen=True)
class LinkMtu(DeviceEntry):
    """The device's MTU set to the bridge's; it dies with the device, so never reverted."""

    kind: ClassVar[str] = "link-mtu"
    revertible: ClassVar[bool] = False
    dev: str
    ifindex: int
    mtu: int

    def present(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        return link is not None and link.mtu == self.mtu

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        nl.set_mtu(self.ifindex, self.mtu)
        return True

    def remove(self, nl) -> bool:
        return False

    def snapshot(self) -> Any:
        return device_mtu(self.dev)

    def restore(self, nl, snap) -> None:
        if snap and self.same_device(nl):
            nl.set_mtu(self.ifindex, snap)

    def describe(self) -> str:
        return f"mtu {self.mtu} on {self.dev}"


@dataclass(frozen=True)
class BridgePort(DeviceEntry):
    """`dev` is a port of `bridge` (by name: a re-created bridge is the same bridge)."""

    kind: ClassVar[str] = "bridge-port"
    dev: str
    ifindex: int
    bridge: str

    def _bridge_index(self, nl) -> int | None:
        link = nl.link(self.bridge)
        return link.index if link is not None and link.kind == "bridge" else None

    def present(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        return link is not None and link.master is not None and \
            link.master == self._bridge_index(nl)

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        master = self._bridge_index(nl)
        if master is None:
            raise VzError(missing_bridge_error(self.bridge))
        nl.set_master(self.ifindex, master)
        return True

    def remove(self, nl) -> bool:
        if not self.same_device(nl) or not self.present(nl):
            return False
        nl.set_master(self.ifindex, None)
        return True

    def describe(self) -> str:
        return f"bridge port {self.dev} on {self.bridge}"


@dataclass(frozen=True)
class PortIsolated(DeviceEntry):
    """IFLA_BRPORT_ISOLATED: the port talks to non-isolated ports only (the uplink)."""

    kind: ClassVar[str] = "port-isolated"
    dev: str
    ifindex: int

    def present(self, nl) -> bool:
        return bool(nl.brport_isolated(self.ifindex))

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        if nl.brport_isolated(self.ifindex) is None:
            raise VzError(f"{self.dev} is not a bridge port: cannot isolate it")
        nl.set_brport_isolated(self.ifindex, True)
        return True

    def remove(self, nl) -> bool:
        if not self.same_device(nl) or not self.present(nl):
            return False
        nl.set_brport_isolated(self.ifindex, False)
        return True

    def describe(self) -> str:
        return f"isolated flag on bridge port {self.dev}"


for _cls in (LinkMtu, BridgePort, PortIsolated):
    register(_cls)


def needs_host_device(iface: Interface) -> bool:
    """Whether wiring acts on the host-side device (libvirt-plugged ports only when they
    ask for port security or isolation)."""
    return not iface.plugged_by_libvirt or iface.filter is not Filter.NONE or iface.isolated


def bridged_entries(iface: Interface, dev: str, ifindex: int, bridge: str,
                    bridge_mtu: int) -> list[Entry]:
    """The entries of one bridged interface, in the order they are added (pure).

    Port security comes first, so no frame of the guest crosses the bridge unfiltered;
    then (for ports we plug) MTU, enslaving, isolation, link up.
    """
    ips = [str(ip.address) for ip in iface.ips]
    out = port_security_entries(dev, ifindex, iface.filter, iface.mac, ips)
    if not iface.plugged_by_libvirt:
        out += [LinkMtu(dev, ifindex, bridge_mtu), BridgePort(dev, ifindex, bridge)]
    else:
        out.append(BridgePort(dev, ifindex, bridge))  # libvirt's: recorded, never ours
    if iface.isolated:
        out.append(PortIsolated(dev, ifindex))
    if not iface.plugged_by_libvirt:
        out.append(LinkUp(dev, ifindex))
    return out


class BridgedWiring(InterfaceWiring):
    mode = Mode.BRIDGED

    def resolve(self, ctx: WireContext, iface: Interface,
                previous: InterfaceRecord | None) -> InterfaceRecord:
        nl = ctx.nl
        bridge = iface.bridge if iface.plugged_by_libvirt else bridge_for(iface, ctx.config)
        if not bridge:
            raise VzError(f"libvirt named no bridge for network '{iface.source_network}'")
        br = nl.link(bridge)
        if br is None:
            raise VzError(missing_bridge_error(bridge))
        if br.kind != "bridge":
            raise VzError(f"{bridge} is not a bridge (it is a {br.kind or 'plain'} device)")
        if not iface.host_dev:
            raise VzError("libvirt named no host device (<target dev>) for this interface")
        link = nl.link(iface.host_dev)
        if link is None:
            raise VzError(f"host device {iface.host_dev} does not exist")
        if link.kind == "bridge" or link.index == br.index:
            raise VzError(f"host device {iface.host_dev} is a bridge, not a guest device")
        if link.master is not None and link.master != br.index:
            other = nl.link_by_index(link.master)
            raise VzError(f"host device {link.name} is already a port of "
                          f"{other.name if other else link.master}, not of {bridge}")
        if iface.mac:
            elsewhere = nl.fdb_ports(br.index, iface.mac) - {link.index}
            if elsewhere:
                port = nl.link_by_index(min(elsewhere))
                raise ConflictError(f"MAC {iface.mac} is already present on {bridge} "
                                    f"(behind port {port.name if port else min(elsewhere)})")
        return InterfaceRecord(
            mac=iface.mac or "", mode=self.mode.value, host_dev=link.name,
            ifindex=link.index, ips=[str(i) for i in iface.ips], neighbour_devs=[],
            extra={"bridge": bridge, "bridge_mtu": br.mtu, "filter": iface.filter.value,
                   "isolated": iface.isolated,
                   "plugged_by": "libvirt" if iface.plugged_by_libvirt else "vzlibvirt"},
        )

    def entries(self, ctx, iface, record):
        return bridged_entries(iface, record.host_dev, record.ifindex,
                               record.extra["bridge"], record.extra["bridge_mtu"])


register_plugin(BridgedWiring())
