"""Pure planning: what the host must hold for a routed interface, and the dry-run text.

No I/O here: the inputs are the model, the config and the resolved device names and
indexes, so every rule can be unit-tested without root.
"""

from __future__ import annotations

from collections.abc import Sequence

from vzlibvirt.config import Config
from vzlibvirt.dhcp import DhcpHost, dhcp_dir
from vzlibvirt.entries import (
    Address,
    DeviceSysctl,
    Entry,
    HostSysctl,
    LinkUp,
    ProxyNeighbour,
    Route,
)
from vzlibvirt.model import Domain, Driver, GuestIP, Interface, IPSource, Mode
from vzlibvirt.rpfilter6 import RoutedPort6


def routed_entries(
    host_dev: str,
    ifindex: int,
    ips: Sequence[GuestIP],
    neighbours: Sequence[tuple[str, int]],
    config: Config,
    dhcp_mac: str | None = None,
) -> list[Entry]:
    """Entries for one routed interface, in the order they are added.

    Settings come first, then the device's own addresses, then routes, and proxy entries
    last: the LAN is only told about an IP once the host can deliver to it.
    """
    has4 = any(ip.version == 4 for ip in ips)
    has6 = any(ip.version == 6 for ip in ips)
    dev, idx = host_dev, ifindex
    out: list[Entry] = []
    if has4:
        out.append(HostSysctl("net/ipv4/ip_forward", "1"))
        for name, nidx in neighbours:
            out.append(DeviceSysctl(name, nidx, f"net/ipv4/conf/{name}/forwarding", "1"))
            # the kernel delays proxied replies to broadcast requests by up to 0.8 s
            out.append(DeviceSysctl(name, nidx, f"net/ipv4/neigh/{name}/proxy_delay", "0"))
    if has6:
        out.append(HostSysctl("net/ipv6/conf/all/forwarding", "1"))
        for name, nidx in neighbours:
            out.append(DeviceSysctl(name, nidx, f"net/ipv6/conf/{name}/proxy_ndp", "1"))
            out.append(DeviceSysctl(name, nidx, f"net/ipv6/neigh/{name}/proxy_delay", "0"))
            # a proxied NA's source is otherwise chosen among the addresses of every
            # device, each guest's included: 0.4 ms per NS at 1,000 guests (performance.md)
            out.append(DeviceSysctl(name, nidx, f"net/ipv6/conf/{name}/use_oif_addrs_only",
                                    "1"))
    if has4:
        out += [
            DeviceSysctl(dev, idx, f"net/ipv4/conf/{dev}/forwarding", "1"),
            DeviceSysctl(dev, idx, f"net/ipv4/conf/{dev}/proxy_arp", "1"),
            DeviceSysctl(dev, idx, f"net/ipv4/conf/{dev}/rp_filter", "1"),
        ]
    if has6:
        out += [
            DeviceSysctl(dev, idx, f"net/ipv6/conf/{dev}/disable_ipv6", "0"),
            DeviceSysctl(dev, idx, f"net/ipv6/conf/{dev}/accept_ra", "0"),
            DeviceSysctl(dev, idx, f"net/ipv6/conf/{dev}/forwarding", "1"),
        ]
    if has6:
        out.append(RoutedPort6(dev, idx))  # IPv6 has no rp_filter sysctl
    out.append(LinkUp(dev, idx))
    if has4:
        out.append(Address(dev, idx, str(config.routed.gateway4), 32))
    if has6:
        out.append(Address(dev, idx, str(config.routed.gateway6), 128))
    for ip in ips:
        out.append(Route(dev, idx, str(ip.address), ip.host_prefix))
    for ip in ips:
        for name, nidx in neighbours:
            out.append(ProxyNeighbour(name, nidx, str(ip.address)))
    v4 = [ip for ip in ips if ip.version == 4]
    # a VM's DHCP client gets its first IPv4; the tap name goes into a dnsmasq tag
    safe_tap = all(c.isalnum() or c in "._-" for c in dev)
    if dhcp_mac and v4 and config.dhcp.enable and safe_tap:
        out.append(DhcpHost(str(dhcp_dir(config.state.dir)), dev, dhcp_mac.lower(),
                            str(v4[0].address)))
    return out


def bridge_for(iface: Interface, config: Config) -> str:
    return iface.bridge or config.bridged.bridge


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
                lines.append(f"    route {ip}/{ip.host_prefix} dev {dev}; proxy neighbour "
                             f"on {neigh}")
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
            if config.routed.announce:
                lines.append("    announce: gratuitous ARP / unsolicited NA after wiring")
        elif iface.mode is Mode.BRIDGED:
            who = "libvirt" if iface.plugged_by_libvirt else "vzlibvirt"
            bridge = iface.bridge or (f"network '{iface.source_network}'"
                                      if iface.plugged_by_libvirt else bridge_for(iface, config))
            lines.append(f"  interface {iface.mac}: bridged on {bridge} (plugged by {who}), "
                         f"host device {dev}, filter {iface.filter}"
                         + (", isolated" if iface.isolated else ""))
            for ip in iface.ips:
                lines.append(f"    allowed IP {ip}")
        else:
            lines.append(f"  interface {iface.label}: type {iface.type}, left alone")
    # names and types come from the XML: no newlines or terminal escapes in the output
    return ["".join(c if c.isprintable() else "?" for c in line) for line in lines]
