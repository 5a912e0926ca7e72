"""Whole-table reads for the periodic resync: raw rtnetlink dumps, decoded by hand.

Why: decoding every attribute of every message (pyroute2 did, ~0.2 ms each) made one
pass over a host with 1,000 routed guests (thousands of routes, addresses and proxy
entries) cost ~2 s of CPU, every `resync_s`. Here a message whose fixed header already
rules it out (not a host route, not in the main table) is skipped unread, and of the
rest only the attributes we compare are looked at: the same pass costs a few tens of
ms. The decoders (`route_key`, `address_key`, `proxy_key`) also serve
netlink_bulk.BulkView. Read-only: repairs still go through the entries and netlink.py.
"""

from __future__ import annotations

import errno
import hashlib
import socket
from collections.abc import Iterator

from vzlibvirt.rtnl import (
    IFA_ADDRESS,
    IFADDRMSG,
    IFINFOMSG,
    NDA_DST,
    NDMSG,
    NETLINK_ROUTE,
    NLMSG_DONE,
    NLMSG_ERROR,
    NTF_PROXY,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_OIF,
    RTA_TABLE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    RTMSG,
    RtnlSocket,
    attrs,
    messages,
    u32,
)

HOST_PREFIXES = (32, 128)
Message = tuple[bytes, int, int]  # (buffer, payload offset, payload end)


def requests(table: str, protocol: int = 0) -> list[tuple[int, bytes]]:
    """The dump requests that read TABLE ("routes": the main table, of one PROTOCOL when
    given, which the kernel then filters; "proxies"; "addresses")."""
    families = (socket.AF_INET, socket.AF_INET6)
    if table == "routes":
        return [(RTM_GETROUTE, RTMSG.pack(f, 0, 0, 0, RT_TABLE_MAIN, protocol, 0, 0, 0))
                for f in families]
    if table == "proxies":  # NTF_PROXY in the request: the kernel dumps the proxy table
        return [(RTM_GETNEIGH, NDMSG.pack(f, 0, 0, NTF_PROXY, 0)) for f in families]
    if table == "addresses":
        return [(RTM_GETADDR, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))]
    raise ValueError(f"unknown kernel table {table!r}")


# the decoders: one message each, None when it is not a record of the table; a message
# whose fixed header already rules it out is not parsed further
def route_key(data: bytes, off: int, end: int,
              protocol: int = 0) -> tuple[str, int, int] | None:
    """(dst, prefixlen, oif) of a host route of the main table (of PROTOCOL if given)."""
    family, dst_len, _src, _tos, table, proto = data[off:off + 6]
    if dst_len not in HOST_PREFIXES or (protocol and proto != protocol):
        return None
    a = attrs(data, off + RTMSG.size, end)
    dst, oif = a.get(RTA_DST), u32(a.get(RTA_OIF))
    if dst is None or oif is None or (u32(a.get(RTA_TABLE)) or table) != RT_TABLE_MAIN:
        return None
    return socket.inet_ntop(family, dst), dst_len, oif


def address_key(data: bytes, off: int, end: int) -> tuple[int, str, int] | None:
    """(ifindex, address, prefixlen) of a host-prefix address (/32, /128)."""
    family, plen, _flags, _scope, index = IFADDRMSG.unpack_from(data, off)
    if plen not in HOST_PREFIXES:
        return None
    addr = attrs(data, off + IFADDRMSG.size, end).get(IFA_ADDRESS)
    return None if addr is None else (index, socket.inet_ntop(family, addr), plen)


def proxy_key(data: bytes, off: int, end: int) -> tuple[str, int] | None:
    """(dst, ifindex) of a proxy-neighbour entry."""
    family, index, _state, flags, _type = NDMSG.unpack_from(data, off)
    dst = attrs(data, off + NDMSG.size, end).get(NDA_DST) if flags & NTF_PROXY else None
    return None if dst is None else (socket.inet_ntop(family, dst), index)


class KernelTables:
    """One dump per table, on first use; answers presence like BulkView does."""

    def __init__(self) -> None:
        self.rtnl = RtnlSocket(rcvbuf=1 << 20)
        self._seqs: dict[tuple[int, bytes], int] = {}  # one per request, for good
        self._cache: dict[str, set] = {}
        self._raw: dict[tuple[int, bytes], list[bytes]] = {}

    def reset(self) -> None:
        """Forget what was read: the next question dumps again (a long-lived user's
        next pass, on the same socket)."""
        self._cache.clear()
        self._raw.clear()

    def fingerprint(self, table: str, protocol: int = 0) -> bytes:
        """Dump TABLE ("routes", "proxies", "addresses"), or take the dump already read,
        and hash the kernel's answer as it came. On one socket a request always carries
        the same sequence number, so two equal fingerprints mean the kernel answered byte
        for byte the same: nothing in that table changed. The table's answers then
        decode from this dump."""
        digest = hashlib.blake2b(digest_size=16)
        for msg_type, body in requests(table, protocol):
            for data in self._read(msg_type, body):
                digest.update(data)
        return digest.digest()

    def close(self) -> None:
        self.rtnl.close()

    def __enter__(self) -> KernelTables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # tables
    def raw_links(self) -> Iterator[Message]:
        """Every RTM_NEWLINK message of a link dump, undecoded (link_events.py reads them)."""
        return self._dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))

    def addresses(self) -> set[tuple[int, str, int]]:
        """(ifindex, address, prefixlen) of the host-prefix addresses (/32, /128)."""
        return self._table("addresses", "addresses", address_key)

    def routes(self, protocol: int = 0) -> set[tuple[str, int, int]]:
        """(dst, prefixlen, oif) of the host routes of the main table; of one PROTOCOL
        only when given (the kernel then sends only those)."""
        return self._table(f"routes{protocol}", "routes",
                           lambda d, o, e: route_key(d, o, e, protocol), protocol)

    def proxies(self) -> set[tuple[str, int]]:
        """(dst, ifindex) of every proxy-neighbour entry."""
        return self._table("proxies", "proxies", proxy_key)

    def _table(self, name: str, table: str, key, protocol: int = 0) -> set:
        if name not in self._cache:
            found = (key(*m) for msg_type, body in requests(table, protocol)
                     for m in self._dump(msg_type, body))
            self._cache[name] = {k for k in found if k is not None}
        return self._cache[name]

    # the raw dump
    def _dump(self, msg_type: int, body: bytes) -> Iterator[Message]:
        seq = self._seq(msg_type, body)
        for data in self._read(msg_type, body):
            for mtype, mseq, start, end in messages(data):
                if mseq == seq and mtype not in (NLMSG_DONE, NLMSG_ERROR):
                    yield data, start, end

    def _seq(self, msg_type: int, body: bytes) -> int:
        return self._seqs.setdefault((msg_type, body), len(self._seqs) + 1)

    def _read(self, msg_type: int, body: bytes) -> list[bytes]:
        """The datagrams of the dump's answer, read once per request (fingerprint() and
        the decoders share them)."""
        if (msg_type, body) not in self._raw:
            self._raw[msg_type, body] = self.rtnl.datagrams(msg_type, body,
                                                            self._seq(msg_type, body))
        return self._raw[msg_type, body]


class TableEvents:
    """The kernel's route, address and link notifications, only to learn whether any
    came: a host where none came since the last look has lost none of its routes or
    addresses (each loss is announced: a deletion, or the link event of a device that
    went down or away), so the resync may skip those dumps. Proxy entries are lost
    without a word and are read every time. A message that might be such a loss, or a
    buffer that overflowed, counts; announcements of non-host routes and new addresses
    do not (a router's table churn would otherwise never let the host be quiet)."""

    GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400  # RTMGRP_LINK, IPV4/6_IFADDR, IPV4/6_ROUTE

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  NETLINK_ROUTE)
        self.sock.bind((0, self.GROUPS))

    def close(self) -> None:
        self.sock.close()

    def quiet(self) -> bool:
        """Read what came since the last call: True when nothing that counts did."""
        quiet = True
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return quiet
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                quiet = False  # notifications were lost: assume the worst
                continue
            if quiet:
                quiet = not any(_counts(data))


def _counts(data: bytes) -> Iterator[bool]:
    """For each message of a notification datagram: whether it may be a loss."""
    for mtype, _seq, start, _end in messages(data):
        if mtype == RTM_NEWROUTE:
            yield data[start + 1] in HOST_PREFIXES  # a host route replaced
        else:
            yield mtype != RTM_NEWADDR
