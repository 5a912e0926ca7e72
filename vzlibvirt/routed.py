"""Host-routed mode: the guest's IPs are routed to its own host-side device.

resolve() finds the host device and the neighbour devices (the `neighbour_devs` policy)
and refuses IPs the host itself owns; routed_entries() lists what the host must hold
(pure); after wiring, the neighbour devices announce each IP so the LAN learns it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from vzlibvirt import announce
from vzlibvirt.config import Config
from vzlibvirt.dhcp import dhcp_dir
from vzlibvirt.entries import (
    Address,
    AnnouncedRoute,
    DeviceSysctl,
    DhcpHost,
    Entry,
    HostSysctl,
    LinkUp,
    ProxyNeighbour,
    Route,
    RoutedPort6,
)
from vzlibvirt.errors import ConflictError, VzError
from vzlibvirt.model import Driver, GuestIP, Interface, Mode
from vzlibvirt.probe import probe
from vzlibvirt.state import InterfaceRecord
from vzlibvirt.wiring import InterfaceWiring, WireContext

log = logging.getLogger(__name__)
RTN_LOCAL = 2
_ANNOUNCE_FAILED: set[tuple[str, int | None]] = set()


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
    # without neighbour devices a routing daemon exports the route (docs/bgp.md)
    route = AnnouncedRoute if config.routed.neighbour_devs == "none" else Route
    for ip in ips:
        out.append(route(dev, idx, str(ip.address), ip.host_prefix))
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



class RoutedWiring(InterfaceWiring):
    mode = Mode.ROUTED

    def resolve(self, ctx: WireContext, iface: Interface,
                previous: InterfaceRecord | None) -> InterfaceRecord:
        link = self.host_link(ctx, iface)
        guest_ips = [str(ip.address) for ip in iface.ips]
        known = set(previous.ips) if previous else set()
        for ip in guest_ips:
            if ip not in known:  # checked when it was first wired
                self._refuse_host_owned(ctx, ip)
        neighbours = self._neighbours(ctx, iface, link.index, previous)
        if ctx.config.routed.conflict_probe and ctx.probe:
            self._probe_lan(ctx, [ip for ip in guest_ips if ip not in known], neighbours)
        return InterfaceRecord(
            mac=iface.mac or "", mode=self.mode, host_dev=link.name,
            ifindex=link.index, ips=guest_ips,
            neighbour_devs=[name for name, _ in neighbours],
        )

    def entries(self, ctx, iface, record):
        neighbours = [(name, ctx.nl.link(name).index) for name in record.neighbour_devs]
        vm = ctx.domain.driver is Driver.QEMU  # containers get their IPs from libvirt
        return routed_entries(record.host_dev, record.ifindex, iface.ips, neighbours,
                              ctx.config, dhcp_mac=iface.mac if vm else None)

    def after_wire(self, ctx, iface, record) -> None:
        if not ctx.config.routed.announce:
            return
        for name in record.neighbour_devs:
            link = ctx.nl.link(name)
            if link is None or not link.up or not link.mac:
                continue
            for ip in record.ips:
                try:
                    announce.announce(link.index, link.mac, ip)
                except OSError as exc:  # an announcement is a courtesy, not a guarantee
                    # once per device and error: a re-publish of 1,000 guests on an uplink
                    # whose IPv6 link-local is not ready yet must not log 1,000 lines
                    if (name, exc.errno) not in _ANNOUNCE_FAILED:
                        _ANNOUNCE_FAILED.add((name, exc.errno))
                        log.warning("announcing %s on %s failed: %s (further failures of "
                                    "this kind are not logged)", ip, name, exc)

    @staticmethod
    def _probe_lan(ctx: WireContext, ips: list[str], neighbours: list[tuple[str, int]]) -> None:
        """Refuse an IP that someone on the LAN already answers for (probes run in
        parallel, so the wait is one timeout however many IPs and devices)."""
        jobs = []
        for name, _ in neighbours:
            link = ctx.nl.link(name)
            if link is None or not link.up or not link.mac:
                continue
            jobs += [(name, link.mac, ip) for ip in ips]
        if not jobs:
            return
        timeout = ctx.config.routed.probe_timeout_ms
        with ThreadPoolExecutor(max_workers=min(len(jobs), 16)) as pool:
            answers = list(pool.map(lambda j: probe(j[0], j[1], j[2], timeout), jobs))
        for (name, _, ip), other in zip(jobs, answers, strict=True):
            if other is not None:
                raise ConflictError(f"IP {ip} is already in use on the LAN "
                                    f"(answered by {other} on {name})")

    @staticmethod
    def _refuse_host_owned(ctx: WireContext, ip: str) -> None:
        _refuse_host_owned_ip(ctx.nl, ip)

    def _neighbours(self, ctx: WireContext, iface: Interface, own_index: int,
                    previous: InterfaceRecord | None) -> list[tuple[str, int]]:
        policy = ctx.config.routed.neighbour_devs
        nl = ctx.nl
        if isinstance(policy, tuple):
            out = []
            for name in policy:
                link = nl.link(name)
                if link is None:
                    raise VzError(f"neighbour device {name} (routed.neighbour_devs) does not exist")
                out.append((link.name, link.index))
            return out
        if policy == "none":  # a routing daemon announces the routes (docs/bgp.md)
            return []
        if policy == "all":
            return self._all_neighbours(ctx, own_index)
        return self._detect(ctx, iface, own_index, previous)

    @staticmethod
    def _detect(ctx, iface, own_index, previous) -> list[tuple[str, int]]:
        """The device the host's routing uses to reach each guest IP (connected subnet or
        default route), looked up before our own /32 exists; a re-wire keeps the devices
        recorded the first time, since the lookup would now find our own route."""
        nl = ctx.nl
        if previous is not None and previous.neighbour_devs:
            links = [nl.link(n) for n in previous.neighbour_devs]
            if all(links):
                return [(link.name, link.index) for link in links]
        found: dict[str, int] = {}
        for gip in iface.ips:
            route = nl.route_get(str(gip.address))
            if route is None or route.oif is None or route.oif == own_index:
                continue
            link = nl.link_by_index(route.oif)
            if link is not None and link.name != "lo":
                found.setdefault(link.name, link.index)
        if not found:
            raise VzError("no neighbour device found: the host has no route towards "
                          f"{', '.join(str(i) for i in iface.ips)}; set routed.neighbour_devs")
        return list(found.items())

    @staticmethod
    def _all_neighbours(ctx, own_index) -> list[tuple[str, int]]:
        """Every UP, non-loopback device with a global address that is not a guest device
        (it holds our gateway address) and not a bridge port."""
        nl = ctx.nl
        global_addr = {idx for idx, _a, _p, scope in nl.addresses() if scope == 0}
        out = []
        for link in nl.links():
            if (link.index == own_index or link.name == "lo" or not link.up
                    or link.master is not None or link.index not in global_addr):
                continue
            out.append((link.name, link.index))
        if not out:
            raise VzError("no neighbour device found (routed.neighbour_devs = \"all\")")
        return out


def _refuse_host_owned_ip(nl, ip: str) -> None:
    """A local route means the host itself owns the address."""
    route = nl.route_get(ip)
    if route is not None and route.type == RTN_LOCAL:
        raise ConflictError(f"IP {ip} is an address of this host")


def refuse_host_owned(domain, nl) -> None:
    """At `prepare` in the agent (netlink already loaded): refuse a host address before
    libvirt creates the guest, rather than at `started`."""
    for iface in domain.routed_interfaces:
        for gip in iface.ips:
            try:
                _refuse_host_owned_ip(nl, str(gip.address))
            except ConflictError as exc:
                raise exc.with_context(domain=domain.name, mac=iface.label) from None

