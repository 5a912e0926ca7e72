"""A Netlink whose presence questions are answered from one dump of each table.

`reconcile` and the agent's re-publishing ask about thousands of entries at once; one
dump per table instead of one request per entry keeps that linear in the number of
entries with a small constant. Each table is dumped on first use only (decoding a dump
costs pyroute2 ~0.2 ms a message, so re-publishing proxy entries dumps just the proxy
table); links are looked up one by one and memoised for the view's life. Changes go to
the kernel and into the view. The view shares the socket of the Netlink it wraps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
from collections.abc import Iterator

from vzlibvirt.netlink import NTF_PROXY, Link, Netlink, link_from_msg

LINK_DUMP_AFTER = 32


class BulkView(Netlink):
    def __init__(self, nl: Netlink):
        super().__init__(nl.ipr)
        self._links: dict[object, Link | None] = {}
        self._misses = 0

    def close(self) -> None:
        """The socket belongs to the wrapped Netlink."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[BulkView]:
        yield self  # the memo lasts as long as the view

    def forget_links(self) -> None:
        """Kept: the view updates its memo itself where it changes a link."""

    @functools.cached_property
    def _addrs(self) -> set[tuple[int, str, int]]:
        return {(m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self.ipr.get_addr()}

    @functools.cached_property
    def _pneigh(self) -> set[tuple[str, int]]:
        """(address, ifindex) of every proxy entry, IPv4 and IPv6 (one dump each)."""
        out = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            # NTF_PROXY must be in the request (the kernel then dumps the proxy table);
            # an explicit dump_filter keeps pyroute2 from turning it into a match filter
            for m in self.ipr.neigh("dump", family=family, flags=NTF_PROXY,
                                    dump_filter=lambda _m: True):
                out.add((m.get_attr("NDA_DST"), m["ifindex"]))
        return out

    @functools.cached_property
    def _routes(self) -> set[tuple[str, int, int]]:
        return {(m.get_attr("RTA_DST"), m["dst_len"], m.get_attr("RTA_OIF"))
                for fam in (socket.AF_INET, socket.AF_INET6)
                for m in self.ipr.get_routes(family=fam, table=254)
                if m.get_attr("RTA_DST") is not None}

    def _get_link(self, key, query) -> Link | None:
        """One get per link at first; past a few dozen, one dump of them all is cheaper."""
        if key not in self._links:
            self._misses += 1
            if self._misses == LINK_DUMP_AFTER:
                for msg in self.ipr.get_links():
                    self._remember(("index", msg["index"]), link_from_msg(msg))
            if key not in self._links:
                super()._get_link(key, query)  # memoised into self._links
        return self._links[key]

    def _remember(self, key, link: Link | None) -> None:
        self._links[key] = link
        if link is not None:
            self._links[("name", link.name)] = self._links[("index", link.index)] = link

    def set_up(self, index: int) -> None:
        super().set_up(index)
        link = self.link_by_index(index)
        if link is not None:
            self._remember(("index", index), dataclasses.replace(link, up=True))

    def addr_present(self, index: int, address: str, prefixlen: int) -> bool:
        return (index, address, prefixlen) in self._addrs

    def addr_add(self, index: int, address: str, prefixlen: int, family: int) -> bool:
        created = super().addr_add(index, address, prefixlen, family)
        self._addrs.add((index, address, prefixlen))
        return created

    def addr_del(self, index: int, address: str, prefixlen: int) -> bool:
        self._addrs.discard((index, address, prefixlen))
        return super().addr_del(index, address, prefixlen)

    def route_present(self, dst: str, prefixlen: int, oif: int) -> bool:
        return (dst, prefixlen, oif) in self._routes

    def route_add(self, dst: str, prefixlen: int, oif: int) -> bool:
        created = super().route_add(dst, prefixlen, oif)
        if created:
            self._routes.add((dst, prefixlen, oif))
        return created

    def route_del(self, dst: str, prefixlen: int, oif: int) -> bool:
        self._routes.discard((dst, prefixlen, oif))
        return super().route_del(dst, prefixlen, oif)

    def pneigh_present(self, dst: str, index: int) -> bool:
        return (dst, index) in self._pneigh

    def pneigh_add(self, dst: str, index: int) -> bool:
        if (dst, index) in self._pneigh:
            return False
        super().pneigh_add(dst, index)
        self._pneigh.add((dst, index))
        return True

    def pneigh_del(self, dst: str, index: int) -> bool:
        self._pneigh.discard((dst, index))
        return super().pneigh_del(dst, index)
