"""Whole-table reads for the periodic resync: raw rtnetlink dumps, decoded by hand.

Why not pyroute2 (netlink.py's BulkView): it decodes every attribute of every message
(~0.2 ms each), so one pass over a host with 1,000 routed guests (thousands of routes,
addresses and proxy entries) cost ~2 s of CPU, every `resync_s`. Here each dump is
read with one socket, a message whose fixed header already rules it out (not a host
route, not in the main table) is skipped unread, and of the rest only the one or two
attributes we compare are looked at: the same pass costs a few tens of ms.
Read-only: repairs still go through the entries and netlink.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import struct
from collections.abc import Iterator

from vzlibvirt.rtnl import (
    IFA_ADDRESS,
    IFINFOMSG,
    NDA_DST,
    NETLINK_GET_STRICT_CHK,
    NETLINK_ROUTE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    NTF_PROXY,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_OIF,
    RTA_TABLE,
    RTATTR,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    SOL_NETLINK,
)

_DONE_SIZE = NLMSGHDR.size + 4  # NLMSG_DONE: the header and the dump's errno
_FAMILIES = {4: socket.AF_INET, 16: socket.AF_INET6}


class KernelTables:
    """One dump per table, on first use; answers presence like BulkView does."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # the kernel then applies the dump filters (table, flags) itself
        self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.sock.bind((0, 0))
        self._seqs: dict[tuple[int, bytes], int] = {}  # one per request, for good
        self._cache: dict[str, object] = {}
        self._raw: dict[tuple[int, bytes], tuple[int, list[bytes]]] = {}

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
        for msg_type, body in self._requests(table, protocol):
            for data in self._read(msg_type, body)[1]:
                digest.update(data)
        return digest.digest()

    def _requests(self, table: str, protocol: int = 0) -> list[tuple[int, bytes]]:
        families = (socket.AF_INET, socket.AF_INET6)
        if table == "routes":
            return [(RTM_GETROUTE, struct.pack("=BBBBBBBBI", f, 0, 0, 0, RT_TABLE_MAIN,
                                               protocol, 0, 0, 0)) for f in families]
        if table == "proxies":
            return [(RTM_GETNEIGH, struct.pack("=BxxxiHBB", f, 0, 0, NTF_PROXY, 0))
                    for f in families]
        if table == "addresses":
            return [(RTM_GETADDR, struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0))]
        raise ValueError(f"unknown kernel table {table!r}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KernelTables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # tables
    def raw_links(self) -> Iterator[tuple[bytes, int, int]]:
        """Every RTM_NEWLINK message of a link dump, undecoded (link_events.py reads them)."""
        return self._dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))

    def addresses(self) -> set[tuple[int, str, int]]:
        """(ifindex, address, prefixlen) of the host-prefix addresses (/32, /128)."""
        if "addrs" not in self._cache:
            out = set()
            [(msg_type, body)] = self._requests("addresses")
            for data, off, end in self._dump(msg_type, body):
                family, plen, _fl, _scope, index = struct.unpack_from("=BBBBI", data, off)
                if plen not in (32, 128):
                    continue
                addr = _attr(data, off + 8, end, IFA_ADDRESS)
                if addr is not None:
                    out.add((index, socket.inet_ntop(family, addr), plen))
            self._cache["addrs"] = out
        return self._cache["addrs"]

    def routes(self, protocol: int = 0) -> set[tuple[str, int, int]]:
        """(dst, prefixlen, oif) of the host routes of the main table; of one PROTOCOL
        only when given (the kernel then sends only those)."""
        name = f"routes{protocol}"
        if name not in self._cache:
            out = set()
            for msg_type, body in self._requests("routes", protocol):
                for data, off, end in self._dump(msg_type, body):
                    fam, dlen = data[off], data[off + 1]
                    if dlen not in (32, 128) or (protocol and data[off + 5] != protocol):
                        continue
                    dst = oif = None
                    table = data[off + 4]
                    pos = off + 12
                    while pos + 4 <= end:
                        alen, atype = RTATTR.unpack_from(data, pos)
                        if alen < 4:
                            break
                        if atype == RTA_DST:
                            dst = data[pos + 4:pos + alen]
                        elif atype == RTA_OIF:
                            oif = struct.unpack_from("=i", data, pos + 4)[0]
                        elif atype == RTA_TABLE:
                            table = struct.unpack_from("=I", data, pos + 4)[0]
                        pos += (alen + 3) & ~3
                    if dst is not None and oif is not None and table == RT_TABLE_MAIN:
                        out.add((socket.inet_ntop(fam, dst), dlen, oif))
            self._cache[name] = out
        return self._cache[name]

    def proxies(self) -> set[tuple[str, int]]:
        """(dst, ifindex) of every proxy-neighbour entry."""
        if "proxies" not in self._cache:
            out = set()
            for msg_type, body in self._requests("proxies"):
                for data, off, end in self._dump(msg_type, body):
                    index = struct.unpack_from("=i", data, off + 4)[0]
                    dst = _attr(data, off + 12, end, NDA_DST)
                    if dst is not None and data[off + 10] & NTF_PROXY:
                        out.add((socket.inet_ntop(_FAMILIES[len(dst)], dst), index))
            self._cache["proxies"] = out
        return self._cache["proxies"]

    # the raw dump
    def _dump(self, msg_type: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
        """(buffer, payload offset, payload end) of each message of one dump."""
        seq, buffers = self._read(msg_type, body)
        for data in buffers:
            off = 0
            while off + NLMSGHDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
                if length < NLMSGHDR.size:
                    break
                if mseq == seq and mtype not in (NLMSG_DONE, NLMSG_ERROR):
                    yield data, off + NLMSGHDR.size, off + length
                off += (length + 3) & ~3

    def _read(self, msg_type: int, body: bytes) -> tuple[int, list[bytes]]:
        """The dump's sequence number and the datagrams of its answer, read to the end
        once per request (fingerprint() and the decoders share them)."""
        if (msg_type, body) in self._raw:
            return self._raw[msg_type, body]
        seq = self._seqs.setdefault((msg_type, body), len(self._seqs) + 1)
        flags = NLM_F_REQUEST | NLM_F_DUMP
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body)
        buffers = []
        while True:
            data = self.sock.recv(1 << 18)
            buffers.append(data)
            if _ended(data, seq):
                break
        self._raw[msg_type, body] = (seq, buffers)
        return seq, buffers


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
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size:
            return
        if mtype == RTM_NEWROUTE:
            yield data[off + NLMSGHDR.size + 1] in (32, 128)  # a host route replaced
        else:
            yield mtype != RTM_NEWADDR
        off += (length + 3) & ~3


def _ended(data: bytes, seq: int) -> bool:
    """Whether this datagram ends the dump SEQ (DONE, or an error: raised). The kernel
    appends NLMSG_DONE (header and errno, 20 bytes: this socket asks for no extended
    acknowledgements) after the last message of a datagram, and a dump it refuses
    answers with one NLMSG_ERROR: so only the datagram's tail and head are looked at,
    not each of its thousands of messages (that walk was most of an idle pass)."""
    if len(data) >= _DONE_SIZE:
        length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, len(data) - _DONE_SIZE)
        if length == _DONE_SIZE and mtype == NLMSG_DONE and mseq == seq:
            _raise_error(data, len(data) - _DONE_SIZE + NLMSGHDR.size)
            return True
    if len(data) >= NLMSGHDR.size:
        _length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, 0)
        if mtype == NLMSG_ERROR and mseq == seq:
            _raise_error(data, NLMSGHDR.size)
            return True
    return False


def _raise_error(data: bytes, off: int) -> None:
    err = -struct.unpack_from("=i", data, off)[0]
    if err:
        raise OSError(err, f"netlink dump: {os.strerror(err)}")


def _attr(data: bytes, pos: int, end: int, want: int) -> bytes | None:
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(data, pos)
        if alen < 4:
            return None
        if atype == want:
            return data[pos + 4:pos + alen]
        pos += (alen + 3) & ~3
    return None
