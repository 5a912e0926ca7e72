"""Pure planning shared by the modes: which bridge an interface joins, and the dry-run
text of `vzlibvirt plan`.

No I/O here: the inputs are the model and the config, so every rule can be unit-tested
without root. Each mode's entries are planned in its own module (routed.py, bridged.py).
"""

from __future__ import annotations

from vzlibvirt import contract
from vzlibvirt.config import Config
from vzlibvirt.model import Domain, Driver, Interface, IPSource, Mode


def bridge_for(iface: Interface, config: Config) -> str | None:
    """The bridge a bridged interface joins: its own `bridge`, else (for ports we plug)
    the host's [bridged] bridge; None for a libvirt-plugged port whose XML names none
    (a `type='network'` interface before libvirt resolved its network)."""
    return iface.bridge or (None if iface.plugged_by_libvirt else config.bridged.bridge)


def describe_plan(domain: Domain, config: Config) -> list[str]:
    """The dry-run text of `vzlibvirt plan`: what would be applied, without touching the host."""
    lines = [f"domain '{domain.name}' ({domain.driver}"
             + (f", uuid {domain.uuid})" if domain.uuid else ")")]
    managed = domain.managed_interfaces
    if not managed:
        lines.append("  no interface managed by vzlibvirt: nothing to do")
    nd = config.routed.neighbour_devs
    neigh = nd if isinstance(nd, str) else ", ".join(nd)
    for iface in domain.interfaces:
        dev = iface.host_dev or "(host device named by libvirt at start)"
        if iface.mode is Mode.ROUTED:
            lines.append(f"  interface {iface.mac}: routed, host device {dev}")
            gw = [str(config.routed.gateway4)] if any(i.version == 4 for i in iface.ips) else []
            gw += [str(config.routed.gateway6)] if any(i.version == 6 for i in iface.ips) else []
            lines.append(f"    gateway on host device: {', '.join(gw)}")
            for ip in iface.ips:
                lines.append(f"    route {ip}/{ip.host_prefix} dev {dev}; " + (
                    f"no proxy neighbour (neighbour_devs = none: a routing daemon exports "
                    f"routes of protocol {contract.ROUTE_PROTOCOL})" if nd == "none"
                    else f"proxy neighbour on {neigh}"))
            if domain.driver is Driver.LXC:
                if any(i.source is IPSource.VZ for i in iface.ips):
                    lines.append("    note: <vz:ip> wires only the host side; the container "
                                 "must configure these addresses itself (use native <ip> "
                                 "to have libvirt do it)")
            else:
                lines.append(f"    guest side (configured by the guest): address/"
                             f"32 or /128, default via {gw[0] if gw else 'the gateway'}")
                v4 = [ip for ip in iface.ips if ip.version == 4]
                if config.dhcp.enable and v4:  # docs/dhcp.md
                    lines.append(f"    dhcp: {iface.mac} gets {v4[0]}/32, router "
                                 f"{config.routed.gateway4}, option 121 routes")
            if config.routed.announce and nd != "none":
                lines.append("    announce: gratuitous ARP / unsolicited NA after wiring")
        elif iface.mode is Mode.BRIDGED:
            who = "libvirt" if iface.plugged_by_libvirt else "vzlibvirt"
            bridge = bridge_for(iface, config) or f"network '{iface.source_network}'"
            lines.append(f"  interface {iface.mac}: bridged on {bridge} (plugged by {who}), "
                         f"host device {dev}, filter {iface.filter}"
                         + (", isolated" if iface.isolated else ""))
            for ip in iface.ips:
                lines.append(f"    allowed IP {ip}")
        else:
            why = f": {iface.note}" if iface.note else ""
            lines.append(f"  interface {iface.label}: type {iface.type}, left alone{why}")
    # names and types come from the XML: no newlines or terminal escapes in the output
    return ["".join(c if c.isprintable() else "?" for c in line) for line in lines]
