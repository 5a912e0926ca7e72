"""The thin netlink layer: the requests of the hot path (wire, unwire, heal).

With netlink_admin.py (the dumps `bridge create/delete` needs) and netlink_bulk.py (the
view that answers presence from one dump per table) it is the only code that imports
pyroute2. Every call here is a single targeted request (a create with NLM_F_EXCL, a get
of one entry), never a dump of a whole table, so a call costs the same with 1 or 1,000
guests on the host; the rare dumps (links(), addresses(), fdb_ports()) serve one
neighbour_devs policy and one bridged check. `import pyroute2` costs ~170 ms, so nothing
imports this module until a path really has netlink work to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vzlibvirt import contract

NTF_PROXY = 0x08
NTF_SELF = 0x02
NUD_PERMANENT = 0x80
RT_SCOPE_LINK = 253
IFA_F_NODAD = 0x02
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


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
    """One rtnetlink socket with the handful of operations the engine needs."""

    def __init__(self, ipr: IPRoute | None = None) -> None:
        # strict checking makes the kernel apply a dump's filters (an address dump for one
        # ifindex), instead of sending every address of the host for pyroute2 to sift
        self.ipr = ipr or IPRoute(strict_check=True)
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
        self.ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # links
    def link(self, name: str) -> Link | None:
        return self._get_link(("name", name), {"ifname": name})

    def link_by_index(self, index: int) -> Link | None:
        return self._get_link(("index", index), {"index": index})

    def _get_link(self, key, query) -> Link | None:
        if self._links is not None and key in self._links:
            return self._links[key]
        try:
            link = link_from_msg(self.ipr.link("get", **query)[0])
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise
            link = None
        if self._links is not None:
            self._links[key] = link
            if link is not None:  # the same link answers for its name and its index
                self._links[("name", link.name)] = self._links[("index", link.index)] = link
        return link

    def links(self) -> list[Link]:
        return [link_from_msg(m) for m in self.ipr.get_links()]

    def set_up(self, index: int) -> None:
        self.forget_links()
        self.ipr.link("set", index=index, state="up")

    def set_down(self, index: int) -> None:
        self.forget_links()
        self.ipr.link("set", index=index, state="down")

    def set_mac(self, index: int, mac: str) -> None:
        self.forget_links()
        self.ipr.link("set", index=index, address=mac)

    def forget_links(self) -> None:
        if self._links is not None:
            self._links.clear()

    # addresses
    def addr_add(self, index: int, address: str, prefixlen: int, family: int) -> bool:
        """Add an address; False when it was already there (EEXIST)."""
        kw = {"scope": RT_SCOPE_LINK}
        if family == 6:
            kw["flags"] = IFA_F_NODAD
        return try_create(lambda: self.ipr.addr("add", index=index, address=address,
                                              prefixlen=prefixlen, **kw))

    def addr_del(self, index: int, address: str, prefixlen: int) -> bool:
        return try_remove(lambda: self.ipr.addr("del", index=index, address=address,
                                              prefixlen=prefixlen))

    def addr_present(self, index: int, address: str, prefixlen: int) -> bool:
        family = AF[6 if ":" in address else 4]
        for msg in self.ipr.addr("dump", family=family, index=index,
                                 dump_filter=lambda m: m["index"] == index):
            if msg.get_attr("IFA_ADDRESS") == address and msg["prefixlen"] == prefixlen:
                return True
        return False

    def addresses(self, family: int | None = None) -> list[tuple[int, str, int, int]]:
        """(ifindex, address, prefixlen, scope) of every address: used by rare paths only."""
        kw = {"family": AF[family]} if family else {}
        return [(m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"], m["scope"])
                for m in self.ipr.get_addr(**kw)]

    # routes
    def route_add(self, dst: str, prefixlen: int, oif: int) -> bool:
        return try_create(lambda: self.ipr.route("add", dst=f"{dst}/{prefixlen}", oif=oif,
                                               proto=contract.ROUTE_PROTOCOL, scope=RT_SCOPE_LINK,
                                               priority=contract.ROUTE_METRIC))

    def route_del(self, dst: str, prefixlen: int, oif: int) -> bool:
        return try_remove(lambda: self.ipr.route("del", dst=f"{dst}/{prefixlen}", oif=oif,
                                               proto=contract.ROUTE_PROTOCOL, scope=RT_SCOPE_LINK))

    def route_get(self, dst: str) -> RouteInfo | None:
        """The route the kernel would use for `dst` (RTM_GETROUTE, no dump)."""
        try:
            msgs = self.ipr.route("get", dst=dst)
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, *_GONE):
                return None
            raise
        return _route(msgs[0]) if msgs else None

    def route_match(self, dst: str, prefixlen: int) -> RouteInfo | None:
        """The FIB entry that matches `dst` (RTM_F_FIB_MATCH): tells an exact /32 apart."""
        try:
            msgs = self.ipr.route("get", dst=dst, flags=0x2000)  # RTM_F_FIB_MATCH in rtm_flags
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, *_GONE):
                return None
            raise
        for msg in msgs:
            info = _route(msg)
            if info.dst_len == prefixlen:
                return info
        return None

    # proxy neighbours
    def pneigh_add(self, dst: str, index: int) -> bool:
        """Add a permanent proxy entry. The kernel has no EEXIST for proxy entries: the
        callers ask pneigh_present() first (the engine does, before writing ahead)."""
        family = AF[6 if ":" in dst else 4]
        self.ipr.neigh("add", dst=dst, ifindex=index, flags=NTF_PROXY, state=NUD_PERMANENT,
                       family=family)
        return True

    def pneigh_del(self, dst: str, index: int) -> bool:
        family = AF[6 if ":" in dst else 4]
        return try_remove(lambda: self.ipr.neigh("del", dst=dst, ifindex=index,
                                               flags=NTF_PROXY, family=family))

    def neigh_forget(self, dst: str, index: int) -> bool:
        """Drop the device's (not proxy) neighbour entry for DST: an unanswered
        resolution is started afresh by the next packet instead of its 1 s retry."""
        family = AF[6 if ":" in dst else 4]
        return try_remove(lambda: self.ipr.neigh("del", dst=dst, ifindex=index,
                                               family=family))

    def pneigh_present(self, dst: str, index: int) -> bool:
        family = AF[6 if ":" in dst else 4]
        try:
            self.ipr.neigh("get", dst=dst, ifindex=index, flags=NTF_PROXY, family=family)
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
        mac = mac.lower()
        if not self._vlan_filtering(bridge_index):
            try:
                msgs = self.ipr.neigh("get", family=socket.AF_BRIDGE, lladdr=mac,
                                      master=bridge_index)
            except NetlinkError as exc:
                if exc.code in _GONE:
                    return set()
                raise
            return {m["ifindex"] for m in msgs if not m["flags"] & NTF_SELF}
        return {m["ifindex"] for m in self.ipr.neigh("dump", family=socket.AF_BRIDGE,
                                                      master=bridge_index,
                                                      dump_filter=lambda _m: True)
                if (m.get_attr("NDA_LLADDR") or "").lower() == mac
                and not m["flags"] & NTF_SELF}

    # bridge ports (bridged mode)
    def set_master(self, index: int, master: int | None) -> None:
        """Enslave `index` to bridge `master`, or release it with None."""
        self.ipr.link("set", index=index, master=master or 0)

    def set_mtu(self, index: int, mtu: int) -> None:
        self.ipr.link("set", index=index, mtu=mtu)

    def brport_isolated(self, index: int) -> bool | None:
        """The port's isolated flag (IFLA_BRPORT_ISOLATED); None when not a bridge port."""
        data = self._brport_data(index)
        return None if data is None else bool(data.get_attr("IFLA_BRPORT_ISOLATED"))

    def set_brport_isolated(self, index: int, on: bool) -> None:
        self.ipr.link("set", index=index, kind="bridge_slave", isolated=1 if on else 0)

    def _vlan_filtering(self, bridge_index: int) -> bool:
        info = self._linkinfo(bridge_index)
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        return bool(data is not None and data.get_attr("IFLA_BR_VLAN_FILTERING"))

    def _linkinfo(self, index: int):
        """The device's IFLA_LINKINFO; None when it has none or is gone."""
        try:
            return self.ipr.link("get", index=index)[0].get_attr("IFLA_LINKINFO")
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise

    def _brport_data(self, index: int):
        info = self._linkinfo(index)
        if info is None or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
            return None
        return info.get_attr("IFLA_INFO_SLAVE_DATA")


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


def link_from_msg(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        up=bool(msg["flags"] & 1),
        mac=msg.get_attr("IFLA_ADDRESS"),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        master=msg.get_attr("IFLA_MASTER"),
        kind=kind,
    )


def _route(msg) -> RouteInfo:
    return RouteInfo(
        oif=msg.get_attr("RTA_OIF"),
        dst_len=msg["dst_len"],
        gateway=msg.get_attr("RTA_GATEWAY"),
        table=msg.get_attr("RTA_TABLE") or msg["table"],
        protocol=msg["proto"],
        type=msg["type"],
    )


def error_text(exc: BaseException) -> str:
    """A short reason for a netlink or OS error, for the one-line refusal."""
    if isinstance(exc, NetlinkError):
        return f"{os.strerror(exc.code)} ({errno.errorcode.get(exc.code, '?')})"
    return str(exc)
