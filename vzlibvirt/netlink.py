"""The thin netlink layer: the only module that imports pyroute2.

Every call is a single targeted request (a create with NLM_F_EXCL, a get of one entry),
never a dump of a whole table, so a call costs the same with 1 or 1,000 guests on the
host. `import pyroute2` costs ~170 ms, so nothing imports this module until a path
really has netlink work to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

RTPROT_VZLIBVIRT = 247  # our routes carry this protocol, so `ip route show proto 247` finds them
NTF_PROXY = 0x08
NTF_SELF = 0x02
NUD_PERMANENT = 0x80
RT_SCOPE_LINK = 253
IFA_F_NODAD = 0x02
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
IFA_F_PERMANENT = 0x80
IFA_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400  # nodad, homeaddress, mngtmpaddr, ...
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_RA = 9
RTNH_F_ONLINK = 4
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

    def kwargs(self) -> dict:
        kw = {"family": AF[self.family], "dst_len": self.dst_len, "table": self.table,
              "proto": self.protocol, "scope": self.scope, "type": self.type,
              "flags": self.flags}
        for key, value in (("dst", self.dst), ("gateway", self.gateway),
                           ("priority", self.priority), ("prefsrc", self.prefsrc)):
            if value is not None:
                kw[key] = value
        return kw

    def describe(self) -> str:
        dst = f"{self.dst}/{self.dst_len}" if self.dst else "default"
        return dst + (f" via {self.gateway}" if self.gateway else "") + (
            f" table {self.table}" if self.table != 254 else "")


class Netlink:
    """One rtnetlink socket with the handful of operations the engine needs."""

    def __init__(self) -> None:
        # strict checking makes the kernel apply a dump's filters (an address dump for one
        # ifindex), instead of sending every address of the host for pyroute2 to sift
        self.ipr = IPRoute(strict_check=True)
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
            link = _link(self.ipr.link("get", **query)[0])
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
        return [_link(m) for m in self.ipr.get_links()]

    def set_up(self, index: int) -> None:
        self.forget_links()
        self.ipr.link("set", index=index, state="up")

    def set_down(self, index: int) -> None:
        self.forget_links()
        self.ipr.link("set", index=index, state="down")

    def forget_links(self) -> None:
        if self._links is not None:
            self._links.clear()

    # addresses
    def addr_add(self, index: int, address: str, prefixlen: int, family: int) -> bool:
        """Add an address; False when it was already there (EEXIST)."""
        kw = {"scope": RT_SCOPE_LINK}
        if family == 6:
            kw["flags"] = IFA_F_NODAD
        return _created(lambda: self.ipr.addr("add", index=index, address=address,
                                              prefixlen=prefixlen, **kw))

    def addr_del(self, index: int, address: str, prefixlen: int) -> bool:
        return _removed(lambda: self.ipr.addr("del", index=index, address=address,
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
        return _created(lambda: self.ipr.route("add", dst=f"{dst}/{prefixlen}", oif=oif,
                                               proto=RTPROT_VZLIBVIRT, scope=RT_SCOPE_LINK))

    def route_del(self, dst: str, prefixlen: int, oif: int) -> bool:
        return _removed(lambda: self.ipr.route("del", dst=f"{dst}/{prefixlen}", oif=oif,
                                               proto=RTPROT_VZLIBVIRT, scope=RT_SCOPE_LINK))

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
        return _removed(lambda: self.ipr.neigh("del", dst=dst, ifindex=index,
                                               flags=NTF_PROXY, family=family))

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
        """Ports of the bridge on which `mac` is known (learned or static), from a dump of
        that bridge's forwarding database only (the kernel filters by master)."""
        mac = mac.lower()
        return {m["ifindex"] for m in self.ipr.neigh("dump", family=socket.AF_BRIDGE,
                                                      master=bridge_index,
                                                      dump_filter=lambda _m: True)
                if (m.get_attr("NDA_LLADDR") or "").lower() == mac
                and not m["flags"] & NTF_SELF}

    def proxy_entries(self) -> set[tuple[str, int]]:
        """(address, ifindex) of every proxy entry, IPv4 and IPv6 (one dump each)."""
        out = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            # NTF_PROXY must be in the request (the kernel then dumps the proxy table);
            # an explicit dump_filter keeps pyroute2 from turning it into a match filter
            for m in self.ipr.neigh("dump", family=family, flags=NTF_PROXY,
                                    dump_filter=lambda _m: True):
                out.add((m.get_attr("NDA_DST"), m["ifindex"]))
        return out


    # bridges and ports (bridged mode, `vzlibvirt bridge`)
    def bridge_add(self, name: str, mac: str | None, mtu: int | None) -> int:
        """Create a bridge (STP off: ports forward at once) and return its ifindex.

        MTU and MAC are set after creation, through the paths that mark them as chosen
        by the user, so the kernel keeps them when ports join or leave.
        """
        self.ipr.link("add", ifname=name, kind="bridge", br_stp_state=0)
        index = self.link(name).index
        if mac:
            self.ipr.link("set", index=index, address=mac)
        if mtu:
            self.ipr.link("set", index=index, mtu=mtu)
        return index

    def link_del(self, index: int) -> bool:
        return _removed(lambda: self.ipr.link("del", index=index))

    def set_master(self, index: int, master: int | None) -> None:
        """Enslave `index` to bridge `master`, or release it with None."""
        self.ipr.link("set", index=index, master=master or 0)

    def set_mtu(self, index: int, mtu: int) -> None:
        self.ipr.link("set", index=index, mtu=mtu)

    def ports(self, master: int) -> list[Link]:
        """The ports of a bridge (a dump: bridge admin and status only)."""
        return [link for link in self.links() if link.master == master]

    def brport_isolated(self, index: int) -> bool | None:
        """The port's isolated flag (IFLA_BRPORT_ISOLATED); None when not a bridge port."""
        data = self._brport_data(index)
        return None if data is None else bool(data.get_attr("IFLA_BRPORT_ISOLATED"))

    def set_brport_isolated(self, index: int, on: bool) -> None:
        self.ipr.link("set", index=index, kind="bridge_slave", isolated=1 if on else 0)

    def _brport_data(self, index: int):
        try:
            msg = self.ipr.link("get", index=index)[0]
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise
        info = msg.get_attr("IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
            return None
        return info.get_attr("IFLA_INFO_SLAVE_DATA")

    # moving an uplink's addresses and routes (bridge admin only: dumps are fine there)
    def addr_specs(self, index: int) -> list[AddrSpec]:
        """Addresses worth moving: IPv4 ones and permanent, non-link-local IPv6 ones
        (the kernel makes link-local and autoconf addresses per device by itself)."""
        out = []
        for m in self.ipr.get_addr(index=index):
            family = 6 if m["family"] == socket.AF_INET6 else 4
            flags = m.get_attr("IFA_FLAGS") or m["flags"]
            if family == 6 and (m["scope"] == RT_SCOPE_LINK or not flags & IFA_F_PERMANENT):
                continue
            out.append(AddrSpec(
                family=family, address=m.get_attr("IFA_ADDRESS"), prefixlen=m["prefixlen"],
                scope=m["scope"], flags=flags & IFA_SETTABLE,
                broadcast=m.get_attr("IFA_BROADCAST"), label=m.get_attr("IFA_LABEL"),
            ))
        return out

    def addr_add_spec(self, index: int, spec: AddrSpec, extra_flags: int = 0,
                      label: str | None = None) -> bool:
        kw = {"scope": spec.scope, "flags": spec.flags | extra_flags}
        if spec.broadcast:
            kw["broadcast"] = spec.broadcast
        if label and spec.family == 4:
            kw["label"] = label
        return _created(lambda: self.ipr.addr("add", index=index, address=spec.address,
                                              prefixlen=spec.prefixlen, **kw))

    def route_specs(self, index: int) -> list[RouteSpec]:
        """Routes through `index` that someone configured (not the kernel's own
        connected, local and RA routes), in every table but `local`."""
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in self.ipr.route("dump", family=family):
                table = m.get_attr("RTA_TABLE") or m["table"]
                if m.get_attr("RTA_MULTIPATH") is not None:
                    if any(nh["oif"] == index for nh in m.get_attr("RTA_MULTIPATH")):
                        raise ValueError(f"a multipath route to {m.get_attr('RTA_DST')} "
                                         f"uses this device (not supported)")
                    continue
                if (m.get_attr("RTA_OIF") != index or table == RT_TABLE_LOCAL
                        or m["proto"] in (RTPROT_KERNEL, RTPROT_RA)):
                    continue
                out.append(RouteSpec(
                    family=6 if family == socket.AF_INET6 else 4,
                    dst=m.get_attr("RTA_DST"), dst_len=m["dst_len"],
                    gateway=m.get_attr("RTA_GATEWAY"), table=table, protocol=m["proto"],
                    scope=m["scope"], type=m["type"], priority=m.get_attr("RTA_PRIORITY"),
                    prefsrc=m.get_attr("RTA_PREFSRC"), flags=m["flags"] & RTNH_F_ONLINK,
                ))
        return out

    def route_add_spec(self, index: int, spec: RouteSpec) -> bool:
        return _created(lambda: self.ipr.route("add", oif=index, **spec.kwargs()))

    def route_del_spec(self, index: int, spec: RouteSpec) -> bool:
        return _removed(lambda: self.ipr.route("del", oif=index, **spec.kwargs()))


def _created(call) -> bool:
    try:
        call()
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise
    return True


def _removed(call) -> bool:
    try:
        call()
    except NetlinkError as exc:
        if exc.code in _GONE:
            return False
        raise
    return True


def _link(msg) -> Link:
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


LINK_DUMP_AFTER = 32


class BulkView:
    """A Netlink whose presence questions are answered from one dump of each table.

    `reconcile` and the agent's re-publishing ask about thousands of entries at once;
    one dump per table instead of one request per entry keeps that linear in the number
    of entries with a small constant. Each table is dumped on first use only (decoding a
    dump costs pyroute2 ~0.2 ms a message, so re-publishing proxy entries dumps just the
    proxy table); links are looked up one by one and memoised. Changes go to the kernel
    and into the view.
    """

    def __init__(self, nl: Netlink):
        self.nl = nl
        self.ipr = nl.ipr
        self._links: dict[object, Link | None] = {}
        self._misses = 0

    def __getattr__(self, name):  # everything not answered here goes to the kernel
        return getattr(self.nl, name)

    @functools.cached_property
    def _addrs(self) -> set[tuple[int, str, int]]:
        return {(m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self.nl.ipr.get_addr()}

    @functools.cached_property
    def _pneigh(self) -> set[tuple[str, int]]:
        return self.nl.proxy_entries()

    @functools.cached_property
    def _routes(self) -> set[tuple[str, int, int]]:
        return {(m.get_attr("RTA_DST"), m["dst_len"], m.get_attr("RTA_OIF"))
                for fam in (socket.AF_INET, socket.AF_INET6)
                for m in self.nl.ipr.get_routes(family=fam, table=254)
                if m.get_attr("RTA_DST") is not None}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[BulkView]:
        yield self

    def link(self, name: str) -> Link | None:
        return self._lookup(("name", name), lambda: self.nl.link(name))

    def link_by_index(self, index: int) -> Link | None:
        return self._lookup(("index", index), lambda: self.nl.link_by_index(index))

    def _lookup(self, key, get) -> Link | None:
        """One get per link at first; past a few dozen, one dump of them all is cheaper."""
        if key not in self._links:
            self._misses += 1
            if self._misses == LINK_DUMP_AFTER:
                for msg in self.nl.ipr.get_links():
                    self._remember(("index", msg["index"]), _link(msg))
            if key not in self._links:
                self._remember(key, get())
        return self._links[key]

    def _remember(self, key, link: Link | None) -> None:
        self._links[key] = link
        if link is not None:
            self._links[("name", link.name)] = self._links[("index", link.index)] = link

    def set_up(self, index: int) -> None:
        self.nl.set_up(index)
        link = self.link_by_index(index)
        if link is not None:
            self._remember(("index", index), dataclasses.replace(link, up=True))

    def addr_present(self, index: int, address: str, prefixlen: int) -> bool:
        return (index, address, prefixlen) in self._addrs

    def addr_add(self, index: int, address: str, prefixlen: int, family: int) -> bool:
        created = self.nl.addr_add(index, address, prefixlen, family)
        self._addrs.add((index, address, prefixlen))
        return created

    def route_present(self, dst: str, prefixlen: int, oif: int) -> bool:
        return (dst, prefixlen, oif) in self._routes

    def route_add(self, dst: str, prefixlen: int, oif: int) -> bool:
        created = self.nl.route_add(dst, prefixlen, oif)
        if created:
            self._routes.add((dst, prefixlen, oif))
        return created

    def pneigh_present(self, dst: str, index: int) -> bool:
        return (dst, index) in self._pneigh

    def pneigh_add(self, dst: str, index: int) -> bool:
        if (dst, index) in self._pneigh:
            return False
        family = AF[6 if ":" in dst else 4]
        self.nl.ipr.neigh("add", dst=dst, ifindex=index, flags=NTF_PROXY, state=NUD_PERMANENT,
                          family=family)
        self._pneigh.add((dst, index))
        return True

    def addr_del(self, index: int, address: str, prefixlen: int) -> bool:
        self._addrs.discard((index, address, prefixlen))
        return self.nl.addr_del(index, address, prefixlen)

    def route_del(self, dst: str, prefixlen: int, oif: int) -> bool:
        self._routes.discard((dst, prefixlen, oif))
        return self.nl.route_del(dst, prefixlen, oif)

    def pneigh_del(self, dst: str, index: int) -> bool:
        self._pneigh.discard((dst, index))
        return self.nl.pneigh_del(dst, index)
