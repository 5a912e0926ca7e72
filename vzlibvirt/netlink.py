"""The thin netlink layer: the requests of the hot path (wire, unwire, heal).

Every call here is a single targeted request (a create with NLM_F_EXCL, a get of one
entry), never a dump of a whole table, so a call costs the same with 1 or 1,000 guests
on the host; the rare dumps (links(), addresses(), fdb_ports()) serve one
neighbour_devs policy and one bridged check. The requests are packed by hand on one raw
socket (rtnl.py: pyroute2 cost ~0.25 ms a request, most of a routed `started`);
netlink_admin.py adds the requests of `bridge create/delete` on the same socket.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from vzlibvirt import contract
from vzlibvirt.rtnl import (
    IFA_ADDRESS,
    IFA_F_NODAD,
    IFA_LOCAL,
    IFADDRMSG,
    IFF_UP,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_BR_VLAN_FILTERING,
    IFLA_BRPORT_ISOLATED,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_INFO_SLAVE_DATA,
    IFLA_INFO_SLAVE_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    NDA_DST,
    NDA_LLADDR,
    NDA_MASTER,
    NDMSG,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NTF_PROXY,
    NTF_SELF,
    NUD_PERMANENT,
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_DELADDR,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_F_FIB_MATCH,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMSG,
    RTN_UNICAST,
    NetlinkError,
    RtnlSocket,
    attr,
    attr_str,
    attr_u32,
    attrs,
    cstr,
    lladdr,
    u32,
)

AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)

__all__ = ["Link", "Netlink", "NetlinkError", "RouteInfo", "error_text"]


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    up: bool
    mac: str | None
    mtu: int
    master: int | None
    kind: str | None


@dataclass(frozen=True)
class RouteInfo:
    """The answer of a route lookup for one address."""

    oif: int | None
    dst_len: int
    gateway: str | None
    table: int
    protocol: int
    type: int


class Netlink:
    """One raw rtnetlink socket with the handful of operations the engine needs.

    `share` makes a view (netlink_bulk.BulkView) that uses another Netlink's socket."""

    def __init__(self, share: Netlink | None = None) -> None:
        self.rtnl = share.rtnl if share is not None else RtnlSocket()
        self._links: dict[object, Link | None] | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Netlink]:
        """Memoise link lookups for one wire/unwire: entries ask about the same few
        devices over and over, and nothing else renames or re-creates them meanwhile
        (our own link changes drop the memo)."""
        self._links = {}
        try:
            yield self
        finally:
            self._links = None

    def close(self) -> None:
        self.rtnl.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # links
    def link(self, name: str) -> Link | None:
        return self._get_link(("name", name), name)

    def link_by_index(self, index: int) -> Link | None:
        return self._get_link(("index", index), index)

    def _get_link(self, key, query: str | int) -> Link | None:
        if self._links is not None and key in self._links:
            return self._links[key]
        msg = self._link_msg(query)
        link = None if msg is None else link_from_msg(msg)
        if self._links is not None:
            self._links[key] = link
            if link is not None:  # the same link answers for its name and its index
                self._links[("name", link.name)] = self._links[("index", link.index)] = link
        return link

    def _link_msg(self, query: str | int) -> bytes | None:
        """RTM_GETLINK by name or index: the answer's payload; None when it is gone."""
        if isinstance(query, str):
            body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, query)
        else:
            body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, query, 0, 0)
        try:
            answer = self.rtnl.request(RTM_GETLINK, body)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise
        return answer[0][1] if answer else None

    def links(self) -> list[Link]:
        return [link_from_msg(payload) for mtype, payload in self.rtnl.dump(
            RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)) if mtype == RTM_NEWLINK]

    def _set_link(self, index: int, *link_attrs: bytes, flags: int = 0, change: int = 0) -> None:
        self.rtnl.request(RTM_NEWLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
                          + b"".join(link_attrs))

    def set_up(self, index: int) -> None:
        self.forget_links()
        self._set_link(index, flags=IFF_UP, change=IFF_UP)

    def set_down(self, index: int) -> None:
        self.forget_links()
        self._set_link(index, flags=0, change=IFF_UP)

    def set_mac(self, index: int, mac: str) -> None:
        self.forget_links()
        self._set_link(index, attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))))

    def forget_links(self) -> None:
        if self._links is not None:
            self._links.clear()

    # addresses
    def addr_add(self, index: int, address: str, prefixlen: int, family: int) -> bool:
        """Add an address; False when it was already there (EEXIST)."""
        flags = IFA_F_NODAD if family == 6 else 0
        return try_create(lambda: self.rtnl.request(
            RTM_NEWADDR, addr_body(index, address, prefixlen, RT_SCOPE_LINK, flags),
            NLM_F_CREATE | NLM_F_EXCL))

    def addr_del(self, index: int, address: str, prefixlen: int) -> bool:
        return try_remove(lambda: self.rtnl.request(
            RTM_DELADDR, addr_body(index, address, prefixlen, 0, 0)))

    def addr_present(self, index: int, address: str, prefixlen: int) -> bool:
        family = _family(address)
        want = socket.inet_pton(family, address)
        for mtype, payload in self.rtnl.dump(RTM_GETADDR, IFADDRMSG.pack(family, 0, 0, 0, index)):
            _fam, plen, _fl, _scope, idx = IFADDRMSG.unpack_from(payload)
            if (mtype == RTM_NEWADDR and idx == index and plen == prefixlen
                    and _ifa_address(payload) == want):
                return True
        return False

    def addresses(self, family: int | None = None) -> list[tuple[int, str, int, int]]:
        """(ifindex, address, prefixlen, scope) of every address: used by rare paths only."""
        out = []
        for mtype, payload in self.rtnl.dump(
                RTM_GETADDR, IFADDRMSG.pack(AF[family] if family else 0, 0, 0, 0, 0)):
            fam, plen, _fl, scope, idx = IFADDRMSG.unpack_from(payload)
            raw = _ifa_address(payload)
            if mtype == RTM_NEWADDR and raw is not None:
                out.append((idx, socket.inet_ntop(fam, raw), plen, scope))
        return out

    # routes
    def route_add(self, dst: str, prefixlen: int, oif: int) -> bool:
        body = _route_body(dst, prefixlen, oif) + attr_u32(RTA_PRIORITY, contract.ROUTE_METRIC)
        return try_create(lambda: self.rtnl.request(RTM_NEWROUTE, body,
                                                    NLM_F_CREATE | NLM_F_EXCL))

    def route_del(self, dst: str, prefixlen: int, oif: int) -> bool:
        return try_remove(lambda: self.rtnl.request(RTM_DELROUTE,
                                                    _route_body(dst, prefixlen, oif)))

    def route_get(self, dst: str) -> RouteInfo | None:
        """The route the kernel would use for `dst` (RTM_GETROUTE, no dump)."""
        answer = self._route_lookup(dst, 0)
        return _route(answer[0]) if answer else None

    def route_match(self, dst: str, prefixlen: int) -> RouteInfo | None:
        """The FIB entry that matches `dst` (RTM_F_FIB_MATCH): tells an exact /32 apart."""
        for payload in self._route_lookup(dst, RTM_F_FIB_MATCH):
            info = _route(payload)
            if info.dst_len == prefixlen:
                return info
        return None

    def _route_lookup(self, dst: str, rtm_flags: int) -> list[bytes]:
        family = _family(dst)
        raw = socket.inet_pton(family, dst)
        body = RTMSG.pack(family, len(raw) * 8, 0, 0, 0, 0, 0, 0, rtm_flags) + attr(RTA_DST, raw)
        try:
            answer = self.rtnl.request(RTM_GETROUTE, body)
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, *_GONE):
                return []
            raise
        return [payload for mtype, payload in answer if mtype == RTM_NEWROUTE]

    # proxy neighbours
    def pneigh_add(self, dst: str, index: int) -> bool:
        """Add a permanent proxy entry. The kernel has no EEXIST for proxy entries: the
        callers ask pneigh_present() first (the engine does, before writing ahead)."""
        self.rtnl.request(RTM_NEWNEIGH, _neigh_body(dst, index, NUD_PERMANENT, NTF_PROXY),
                          NLM_F_CREATE | NLM_F_EXCL)
        return True

    def pneigh_del(self, dst: str, index: int) -> bool:
        return try_remove(lambda: self.rtnl.request(
            RTM_DELNEIGH, _neigh_body(dst, index, 0, NTF_PROXY)))

    def neigh_forget(self, dst: str, index: int) -> bool:
        """Drop the device's (not proxy) neighbour entry for DST: an unanswered
        resolution is started afresh by the next packet instead of its 1 s retry."""
        return try_remove(lambda: self.rtnl.request(RTM_DELNEIGH,
                                                    _neigh_body(dst, index, 0, 0)))

    def pneigh_present(self, dst: str, index: int) -> bool:
        try:
            self.rtnl.request(RTM_GETNEIGH, _neigh_body(dst, index, 0, NTF_PROXY))
        except NetlinkError as exc:
            if exc.code in _GONE:
                return False
            raise
        return True

    def route_present(self, dst: str, prefixlen: int, oif: int) -> bool:
        info = self.route_match(dst, prefixlen)
        return info is not None and info.oif == oif

    def fdb_ports(self, bridge_index: int, mac: str) -> set[int]:
        """Ports of the bridge on which `mac` is known (learned or static). One targeted
        get (what `bridge fdb get` sends): ~0.6 ms however many ports the bridge has,
        where the dump of its forwarding database took 0.8 s with 1,000 ports
        (docs/performance.md). A VLAN-filtering bridge keys entries by VLAN too, so
        there the dump (filtered by master in the kernel) is still used."""
        raw = bytes.fromhex(mac.replace(":", ""))
        head = NDMSG.pack(socket.AF_BRIDGE, 0, 0, 0, 0)
        if not self._vlan_filtering(bridge_index):
            try:
                answer = self.rtnl.request(RTM_GETNEIGH, head + attr(NDA_LLADDR, raw)
                                           + attr_u32(NDA_MASTER, bridge_index))
            except NetlinkError as exc:
                if exc.code in _GONE:
                    return set()
                raise
        else:
            answer = [(mtype, payload) for mtype, payload in self.rtnl.dump(
                RTM_GETNEIGH, head + attr_u32(NDA_MASTER, bridge_index))
                if attrs(payload, NDMSG.size).get(NDA_LLADDR) == raw]
        ports = set()
        for mtype, payload in answer:
            _fam, ifindex, _state, flags, _type = NDMSG.unpack_from(payload)
            if mtype == RTM_NEWNEIGH and not flags & NTF_SELF:
                ports.add(ifindex)
        return ports

    # bridge ports (bridged mode)
    def set_master(self, index: int, master: int | None) -> None:
        """Enslave `index` to bridge `master`, or release it with None."""
        self._set_link(index, attr_u32(IFLA_MASTER, master or 0))

    def set_mtu(self, index: int, mtu: int) -> None:
        self._set_link(index, attr_u32(IFLA_MTU, mtu))

    def brport_isolated(self, index: int) -> bool | None:
        """The port's isolated flag (IFLA_BRPORT_ISOLATED); None when not a bridge port."""
        info = self._linkinfo(index)
        if cstr(info.get(IFLA_INFO_SLAVE_KIND)) != "bridge":
            return None
        data = attrs(info.get(IFLA_INFO_SLAVE_DATA, b""))
        return bool(data.get(IFLA_BRPORT_ISOLATED, b"\0")[0])

    def set_brport_isolated(self, index: int, on: bool) -> None:
        port = attr(IFLA_BRPORT_ISOLATED, bytes([1 if on else 0]))
        self._set_link(index, attr(IFLA_LINKINFO, attr_str(IFLA_INFO_SLAVE_KIND, "bridge")
                                   + attr(IFLA_INFO_SLAVE_DATA, port)))

    def _vlan_filtering(self, bridge_index: int) -> bool:
        data = attrs(self._linkinfo(bridge_index).get(IFLA_INFO_DATA, b""))
        return bool(data.get(IFLA_BR_VLAN_FILTERING, b"\0")[0])

    def _linkinfo(self, index: int) -> dict[int, bytes]:
        """The device's IFLA_LINKINFO attributes; empty when it has none or is gone."""
        msg = self._link_msg(index)
        if msg is None:
            return {}
        return attrs(attrs(msg, IFINFOMSG.size).get(IFLA_LINKINFO, b""))


def try_create(call) -> bool:
    try:
        call()
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise
    return True


def try_remove(call) -> bool:
    try:
        call()
    except NetlinkError as exc:
        if exc.code in _GONE:
            return False
        raise
    return True


def link_from_msg(payload: bytes) -> Link:
    """A Link from an RTM_NEWLINK payload."""
    _fam, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    a = attrs(payload, IFINFOMSG.size)
    info = attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    return Link(
        index=index,
        name=cstr(a.get(IFLA_IFNAME)) or "",
        up=bool(flags & IFF_UP),
        mac=lladdr(a.get(IFLA_ADDRESS)),
        mtu=u32(a.get(IFLA_MTU)) or 0,
        master=u32(a.get(IFLA_MASTER)),
        kind=cstr(info.get(IFLA_INFO_KIND)),
    )


def _route(payload: bytes) -> RouteInfo:
    family, dst_len, _s, _t, table, protocol, _scope, rtype, _f = RTMSG.unpack_from(payload)
    a = attrs(payload, RTMSG.size)
    gateway = a.get(RTA_GATEWAY)
    return RouteInfo(
        oif=u32(a.get(RTA_OIF)),
        dst_len=dst_len,
        gateway=socket.inet_ntop(family, gateway) if gateway else None,
        table=u32(a.get(RTA_TABLE)) or table,
        protocol=protocol,
        type=rtype,
    )


def _family(address: str) -> int:
    return AF[6 if ":" in address else 4]


def addr_body(index: int, address: str, prefixlen: int, scope: int, flags: int) -> bytes:
    """An RTM_NEWADDR/RTM_DELADDR request (IPv4 also gets IFA_LOCAL, as `ip` sends it)."""
    family = _family(address)
    raw = socket.inet_pton(family, address)
    body = IFADDRMSG.pack(family, prefixlen, flags, scope, index) + attr(IFA_ADDRESS, raw)
    if family == socket.AF_INET:
        body += attr(IFA_LOCAL, raw)
    return body


def _ifa_address(payload: bytes) -> bytes | None:
    a = attrs(payload, IFADDRMSG.size)
    return a.get(IFA_ADDRESS, a.get(IFA_LOCAL))


def _route_body(dst: str, prefixlen: int, oif: int) -> bytes:
    family = _family(dst)
    return (RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, contract.ROUTE_PROTOCOL,
                       RT_SCOPE_LINK, RTN_UNICAST, 0)
            + attr(RTA_DST, socket.inet_pton(family, dst)) + attr_u32(RTA_OIF, oif))


def _neigh_body(dst: str, index: int, state: int, flags: int) -> bytes:
    family = _family(dst)
    return (NDMSG.pack(family, index, state, flags, 0)
            + attr(NDA_DST, socket.inet_pton(family, dst)))


def error_text(exc: BaseException) -> str:
    """A short reason for a netlink or OS error, for the one-line refusal."""
    if isinstance(exc, NetlinkError):
        return f"{os.strerror(exc.code)} ({errno.errorcode.get(exc.code, '?')})"
    return str(exc)
