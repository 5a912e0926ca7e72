"""A Netlink whose presence questions are answered from one dump of each table.

`reconcile` and the agent's re-publishing ask about thousands of entries at once; one
dump per table instead of one request per entry keeps that linear in the number of
entries with a small constant. Each table is dumped on first use only (re-publishing
proxy entries dumps just the proxy table) and decoded by kernel_tables' decoders, so the
view and the resync agree on what a record is (routes: the main table's host routes,
which are all the engine adds); links are looked up one by one and memoised for the
view's life. Changes go to the kernel and into the view. The view shares the socket of
the Netlink it wraps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator

from vzlibvirt.kernel_tables import HOST_PREFIXES, proxy_key, requests, route_key
from vzlibvirt.netlink import Link, Netlink

LINK_DUMP_AFTER = 32


class BulkView(Netlink):
    def __init__(self, nl: Netlink):
        super().__init__(share=nl)
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
        return {(index, address, plen) for index, address, plen, _scope in self.addresses()}

    @functools.cached_property
    def _pneigh(self) -> set[tuple[str, int]]:
        """(address, ifindex) of every proxy entry, IPv4 and IPv6 (one dump each)."""
        return self._table("proxies", proxy_key)

    @functools.cached_property
    def _routes(self) -> set[tuple[str, int, int]]:
        """(dst, prefixlen, oif) of the main table's host routes."""
        return self._table("routes", route_key)

    def _table(self, table: str, key) -> set:
        found = (key(payload, 0, len(payload)) for msg_type, body in requests(table)
                 for _mtype, payload in self.rtnl.dump(msg_type, body))
        return {k for k in found if k is not None}

    def _get_link(self, key, query) -> Link | None:
        """One get per link at first; past a few dozen, one dump of them all is cheaper."""
        if key not in self._links:
            self._misses += 1
            if self._misses == LINK_DUMP_AFTER:
                for link in self.links():
                    self._remember(("index", link.index), link)
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
        if prefixlen not in HOST_PREFIXES:  # the view holds host routes only
            return super().route_present(dst, prefixlen, oif)
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
