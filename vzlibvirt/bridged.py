"""Bridged mode: the guest's host-side device is a port of a host bridge (seed 5.2.1.2,
5.2.2.1).

The guest owns its MAC, ARP table and routes; the host only plugs the device in. A
`type='ethernet'` interface is plugged by us (MTU matched to the bridge first, so the
bridge never lowers its own MTU, then enslaved and brought up); a `type='bridge'` (or
bridge-mode `type='network'`) interface is plugged by libvirt, and we only add what
libvirt does not do: port security (portsec.py) and the isolated flag.
"""

from __future__ import annotations

from vzlibvirt.entries.base import Entry
from vzlibvirt.entries.bridge import BridgePort, PortIsolated
from vzlibvirt.entries.kernel import LinkMtu, LinkUp
from vzlibvirt.entries.nft import PortFilter, PortIP, PortMac
from vzlibvirt.errors import ConflictError, VzError, missing_bridge_error
from vzlibvirt.model import Filter, Interface, Mode
from vzlibvirt.plan import bridge_for
from vzlibvirt.portsec import eui64_link_local
from vzlibvirt.state import InterfaceRecord, StateStore
from vzlibvirt.wiring import InterfaceWiring, WireContext


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
        bridge = bridge_for(iface, ctx.config)
        if not bridge:
            raise VzError(f"libvirt named no bridge for network '{iface.source_network}'")
        br = nl.link(bridge)
        if br is None:
            raise VzError(missing_bridge_error(bridge))
        if br.kind != "bridge":
            raise VzError(f"{bridge} is not a bridge (it is a {br.kind or 'plain'} device)")
        link = self.host_link(ctx, iface)
        if link.kind == "bridge" or link.index == br.index:
            raise VzError(f"host device {iface.host_dev} is a bridge, not a guest device")
        if link.master is not None and link.master != br.index:
            other = nl.link_by_index(link.master)
            raise VzError(f"host device {link.name} is already a port of "
                          f"{other.name if other else link.master}, not of {bridge}")
        if iface.mac:
            elsewhere = nl.fdb_ports(br.index, iface.mac) - {link.index}
            if elsewhere and not ctx.probe:
                # a migration's destination: the guest still runs on the source, whose
                # frames taught the bridge its MAC behind the uplink; only another
                # local guest's port refuses
                elsewhere &= _guest_ports(ctx.store, ctx.domain.key)
            if elsewhere:
                port = nl.link_by_index(min(elsewhere))
                raise ConflictError(f"MAC {iface.mac} is already present on {bridge} "
                                    f"(behind port {port.name if port else min(elsewhere)})")
        return InterfaceRecord(
            mac=iface.mac or "", mode=self.mode, host_dev=link.name,
            ifindex=link.index, ips=[str(i) for i in iface.ips], neighbour_devs=[],
            bridge=bridge, bridge_mtu=br.mtu, filter=iface.filter, isolated=iface.isolated,
            plugged_by="libvirt" if iface.plugged_by_libvirt else "vzlibvirt",
        )

    def entries(self, ctx, iface, record):
        return bridged_entries(iface, record.host_dev, record.ifindex,
                               record.bridge, record.bridge_mtu)


def _guest_ports(store: StateStore, key: str) -> set[int]:
    """The host devices of every other domain recorded on this host."""
    return {i.ifindex for r in store.records() if r.key != key for i in r.interfaces}
