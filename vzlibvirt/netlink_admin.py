"""Netlink for `bridge create/delete`: creating and deleting the bridge, and moving an
uplink's addresses and routes onto it and back. Dumps are fine here: it runs once per
bridge, never on a guest's hook path. The requests are packed on netlink.py's socket
like the hot path's, so the product has one netlink layer and one kind of refusal
(rtnl.NetlinkError).
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass

from vzlibvirt.netlink import AF, Link, Netlink, addr_body, try_create, try_remove
from vzlibvirt.rtnl import (
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_F_NODAD,
    IFA_FLAGS,
    IFA_LABEL,
    IFADDRMSG,
    IFINFOMSG,
    IFLA_BR_STP_STATE,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RT_SCOPE_LINK,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    RTNEXTHOP,
    attr,
    attr_str,
    attr_u32,
    attrs,
    cstr,
    u32,
)

IFA_F_PERMANENT = 0x80
IFA_F_TENTATIVE = 0x40  # duplicate address detection still running
IFA_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400  # nodad, homeaddress, mngtmpaddr, ...
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_RA = 9
RTNH_F_ONLINK = 4

__all__ = ["IFA_F_NODAD", "AddrSpec", "BridgeNetlink", "RouteSpec"]


@dataclass(frozen=True)
class AddrSpec:
    """An address as `bridge create` moves it, with what is needed to put it back."""

    family: int
    address: str
    prefixlen: int
    scope: int
    flags: int
    broadcast: str | None
    label: str | None


@dataclass(frozen=True)
class RouteSpec:
    """A configured route through one device, without the device."""

    family: int
    dst: str | None
    dst_len: int
    gateway: str | None
    table: int
    protocol: int
    scope: int
    type: int
    priority: int | None
    prefsrc: str | None
    flags: int

    def describe(self) -> str:
        dst = f"{self.dst}/{self.dst_len}" if self.dst else "default"
        return dst + (f" via {self.gateway}" if self.gateway else "") + (
            f" table {self.table}" if self.table != 254 else "")


class BridgeNetlink(Netlink):
    """Netlink plus what only the bridge administration needs."""

    def bridge_add(self, name: str, mac: str | None, mtu: int | None) -> int:
        """Create a bridge (STP off: ports forward at once) and return its ifindex.

        MTU and MAC are set after creation, through the paths that mark them as chosen
        by the user, so the kernel keeps them when ports join or leave.
        """
        kind = attr_str(IFLA_INFO_KIND, "bridge") + attr(
            IFLA_INFO_DATA, attr_u32(IFLA_BR_STP_STATE, 0))
        self.rtnl.request(RTM_NEWLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                          + attr_str(IFLA_IFNAME, name) + attr(IFLA_LINKINFO, kind),
                          NLM_F_CREATE | NLM_F_EXCL)
        self.forget_links()
        index = self.link(name).index
        if mac:
            self.set_mac(index, mac)
        if mtu:
            self.set_mtu(index, mtu)
        return index

    def link_del(self, index: int) -> bool:
        self.forget_links()
        return try_remove(lambda: self.rtnl.request(
            RTM_DELLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)))

    def ports(self, master: int) -> list[Link]:
        """The ports of a bridge (a dump: bridge admin and status only)."""
        return [link for link in self.links() if link.master == master]

    def addr_specs(self, index: int) -> list[AddrSpec]:
        """Addresses worth moving: IPv4 ones and permanent, non-link-local IPv6 ones
        (the kernel makes link-local and autoconf addresses per device by itself)."""
        out = []
        for spec in self._addr_dump(index, socket.AF_UNSPEC):
            if spec.family == 6 and (spec.scope == RT_SCOPE_LINK
                                     or not spec.flags & IFA_F_PERMANENT):
                continue
            out.append(dataclasses.replace(spec, flags=spec.flags & IFA_SETTABLE))
        return out

    def tentative6(self, index: int) -> list[tuple[str, int]]:
        """(address, prefixlen) of the device's IPv6 addresses still in duplicate
        address detection: they receive nothing until it ends."""
        return [(spec.address, spec.prefixlen)
                for spec in self._addr_dump(index, socket.AF_INET6)
                if spec.flags & IFA_F_TENTATIVE]

    def _addr_dump(self, index: int, family: int) -> list[AddrSpec]:
        """The device's addresses with all their flags (IFA_FLAGS holds those past 8 bits)."""
        out = []
        for mtype, payload in self.rtnl.dump(RTM_GETADDR,
                                             IFADDRMSG.pack(family, 0, 0, 0, index)):
            fam, plen, flags, scope, idx = IFADDRMSG.unpack_from(payload)
            a = attrs(payload, IFADDRMSG.size)
            raw = a.get(IFA_ADDRESS)
            if mtype != RTM_NEWADDR or idx != index or raw is None:
                continue
            broadcast = a.get(IFA_BROADCAST)
            out.append(AddrSpec(
                family=6 if fam == socket.AF_INET6 else 4,
                address=socket.inet_ntop(fam, raw), prefixlen=plen, scope=scope,
                flags=u32(a.get(IFA_FLAGS)) or flags,
                broadcast=socket.inet_ntop(fam, broadcast) if broadcast else None,
                label=cstr(a.get(IFA_LABEL)),
            ))
        return out

    def addr_add_spec(self, index: int, spec: AddrSpec, extra_flags: int = 0,
                      label: str | None = None) -> bool:
        flags = spec.flags | extra_flags
        body = addr_body(index, spec.address, spec.prefixlen, spec.scope, flags & 0xFF)
        body += attr_u32(IFA_FLAGS, flags)
        if spec.broadcast:
            body += attr(IFA_BROADCAST, socket.inet_pton(AF[spec.family], spec.broadcast))
        if label and spec.family == 4:
            body += attr_str(IFA_LABEL, label)
        return try_create(lambda: self.rtnl.request(RTM_NEWADDR, body,
                                                    NLM_F_CREATE | NLM_F_EXCL))

    def route_specs(self, index: int) -> list[RouteSpec]:
        """Routes through `index` that someone configured (not the kernel's own
        connected, local and RA routes), in every table but `local`."""
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            # table 0 (RT_TABLE_UNSPEC) in a strict dump request: every table
            for _mtype, payload in self.rtnl.dump(
                    RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
                spec, oifs, multipath = _route_spec(payload)
                if multipath:
                    if index in oifs:
                        raise ValueError(f"a multipath route to {spec.describe()} uses "
                                         f"this device (not supported)")
                    continue
                if (oifs != [index] or spec.table == RT_TABLE_LOCAL
                        or spec.protocol in (RTPROT_KERNEL, RTPROT_RA)):
                    continue
                out.append(spec)
        return out

    def route_add_spec(self, index: int, spec: RouteSpec) -> bool:
        return try_create(lambda: self.rtnl.request(
            RTM_NEWROUTE, _route_spec_body(index, spec), NLM_F_CREATE | NLM_F_EXCL))

    def route_del_spec(self, index: int, spec: RouteSpec) -> bool:
        return try_remove(lambda: self.rtnl.request(RTM_DELROUTE,
                                                    _route_spec_body(index, spec)))


def _route_spec(payload: bytes) -> tuple[RouteSpec, list[int], bool]:
    """A dumped route as a RouteSpec, the devices it goes through (its own, or each
    nexthop's of a multipath route) and whether it is a multipath route."""
    family, dst_len, _src, _tos, table, proto, scope, rtype, flags = RTMSG.unpack_from(payload)
    a = attrs(payload, RTMSG.size)

    def ip(kind: int) -> str | None:
        raw = a.get(kind)
        return socket.inet_ntop(family, raw) if raw else None

    multipath = RTA_MULTIPATH in a
    if multipath:
        oifs = _nexthop_devices(a[RTA_MULTIPATH])
    else:
        oifs = [] if a.get(RTA_OIF) is None else [u32(a[RTA_OIF])]
    return RouteSpec(
        family=6 if family == socket.AF_INET6 else 4, dst=ip(RTA_DST), dst_len=dst_len,
        gateway=ip(RTA_GATEWAY), table=u32(a.get(RTA_TABLE)) or table, protocol=proto,
        scope=scope, type=rtype, priority=u32(a.get(RTA_PRIORITY)), prefsrc=ip(RTA_PREFSRC),
        flags=flags & RTNH_F_ONLINK,
    ), oifs, multipath


def _nexthop_devices(data: bytes) -> list[int]:
    """The ifindex of each struct rtnexthop in an RTA_MULTIPATH payload."""
    out, pos = [], 0
    while pos + RTNEXTHOP.size <= len(data):
        length, _flags, _hops, ifindex = RTNEXTHOP.unpack_from(data, pos)
        if length < RTNEXTHOP.size:
            break
        out.append(ifindex)
        pos += (length + 3) & ~3
    return out


def _route_spec_body(index: int, spec: RouteSpec) -> bytes:
    """The RTM_NEWROUTE/RTM_DELROUTE request for SPEC through device INDEX (the table in
    RTA_TABLE: the header's byte cannot hold numbers past 255)."""
    family = AF[spec.family]
    body = RTMSG.pack(family, spec.dst_len, 0, 0, spec.table if spec.table < 256 else 0,
                      spec.protocol, spec.scope, spec.type, spec.flags)
    body += attr_u32(RTA_TABLE, spec.table) + attr_u32(RTA_OIF, index)
    for kind, value in ((RTA_DST, spec.dst), (RTA_GATEWAY, spec.gateway),
                        (RTA_PREFSRC, spec.prefsrc)):
        if value is not None:
            body += attr(kind, socket.inet_pton(family, value))
    if spec.priority is not None:
        body += attr_u32(RTA_PRIORITY, spec.priority)
    return body
