"""Raw rtnetlink: the wire formats, one request socket, attribute packing and parsing.

Why not pyroute2 for the product's requests: its synchronous calls run an asyncio loop
per request and decode every attribute of the answer into objects, ~0.25 ms a request
on an idle machine, and a routed `started` makes 13 of them: most of the call
(docs/performance.md). Packed and parsed here, a request costs the kernel's work and a
few µs of Python. netlink.py and netlink_admin.py build their operations on this;
kernel_tables.py reads whole tables through `RtnlSocket.datagrams`, and link_events.py
shares the formats.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK = 10, 12
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30

# the constants of linux/rtnetlink.h, if_link.h, if_addr.h, neighbour.h the product uses
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000  # administratively up; carrier
NTF_SELF, NTF_PROXY = 0x02, 0x08
NUD_PERMANENT = 0x80
RT_SCOPE_LINK = 253
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTM_F_FIB_MATCH = 0x2000
IFA_F_NODAD = 0x02
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING = 5, 7
IFLA_BRPORT_ISOLATED = 33
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_MULTIPATH, RTA_TABLE = 9, 15
NDA_DST, NDA_LLADDR, NDA_MASTER = 1, 2, 9

# struct nlmsghdr, struct rtattr and the family headers (linux/netlink.h, rtnetlink.h)
NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
RTATTR = struct.Struct("=HH")  # length, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                      scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTNEXTHOP = struct.Struct("=HBBi")  # length, flags, hops, ifindex (RTA_MULTIPATH)
U32 = struct.Struct("=I")
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_RECV = 1 << 16
_DONE_SIZE = NLMSGHDR.size + 4  # NLMSG_DONE: the header and the dump's errno


class NetlinkError(Exception):
    """The kernel refused a request: `code` is the errno, as pyroute2's error has it."""

    def __init__(self, code: int, what: str = ""):
        super().__init__(code, f"{what}: {os.strerror(code)}" if what else os.strerror(code))
        self.code = code


# packing
def attr(kind: int, payload: bytes) -> bytes:
    size = RTATTR.size + len(payload)
    return RTATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


# parsing
def attrs(data: bytes, pos: int = 0, end: int | None = None) -> dict[int, bytes]:
    """{type: payload} of the attributes in data[pos:end] (the first of each type)."""
    end = len(data) if end is None else end
    out: dict[int, bytes] = {}
    while pos + RTATTR.size <= end:
        size, kind = RTATTR.unpack_from(data, pos)
        if size < RTATTR.size:
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[pos + RTATTR.size:pos + size])
        pos += (size + 3) & ~3
    return out


def u32(payload: bytes | None) -> int | None:
    return None if payload is None else U32.unpack_from(payload)[0]


def cstr(payload: bytes | None) -> str | None:
    return None if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def lladdr(payload: bytes | None) -> str | None:
    """A link-layer address as `ip` prints it (aa:bb:...); None when there is none."""
    return ":".join(f"{b:02x}" for b in payload) if payload else None


def messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, sequence number, payload offset, payload end) of each message of one
    netlink datagram: offsets, so that a reader can skip a message without copying it."""
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size:
            return
        yield mtype, mseq, off + NLMSGHDR.size, off + length
        off += (length + 3) & ~3


def dump_ended(data: bytes, seq: int) -> bool:
    """Whether this datagram ends the dump SEQ (DONE, or a refusal: raised). The kernel
    appends NLMSG_DONE (header and errno, 20 bytes: the request sockets ask for no
    extended acknowledgements) after the last message of a datagram, and a dump it
    refuses answers with one NLMSG_ERROR: so only the datagram's tail and head are
    looked at, not each of its thousands of messages (that walk was most of an idle
    resync pass)."""
    if len(data) >= _DONE_SIZE:
        length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, len(data) - _DONE_SIZE)
        if length == _DONE_SIZE and mtype == NLMSG_DONE and mseq == seq:
            _raise_refusal(data, len(data) - _DONE_SIZE + NLMSGHDR.size)
            return True
    if len(data) >= NLMSGHDR.size:
        _length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, 0)
        if mtype == NLMSG_ERROR and mseq == seq:
            _raise_refusal(data, NLMSGHDR.size)
            return True
    return False


def _raise_refusal(data: bytes, off: int) -> None:
    err = -struct.unpack_from("=i", data, off)[0]
    if err:
        raise NetlinkError(err, "netlink dump")


class RtnlSocket:
    """One netlink socket for requests: NETLINK_ROUTE, or PROTOCOL (nftlib's one
    nfnetlink lookup). Each request asks for an acknowledgement and is read to it (a
    dump to its NLMSG_DONE), so answers cannot be confused; the lock lets threads share
    the socket. Strict checking makes the kernel apply a dump's filters (an address
    dump for one ifindex) instead of sending everything. Keep the socket: closing a
    netlink socket can wait for an RCU grace period (11 ms measured for nfnetlink)."""

    def __init__(self, protocol: int = NETLINK_ROUTE, rcvbuf: int | None = None) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             protocol)
        try:
            if rcvbuf:  # a whole-table reader: dumps of megabytes come fast
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if protocol == NETLINK_ROUTE:
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without our request
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def request(self, msg_type: int, body: bytes, flags: int = 0) -> list[tuple[int, bytes]]:
        """Send one request (NLM_F_REQUEST | NLM_F_ACK | FLAGS); return the answer's
        messages as (type, payload), raising NetlinkError if the kernel refused."""
        return self._exchange(msg_type, body, NLM_F_REQUEST | NLM_F_ACK | flags, dump=False)

    def dump(self, msg_type: int, body: bytes) -> list[tuple[int, bytes]]:
        """Every message of one dump, as (type, payload)."""
        return self._exchange(msg_type, body, NLM_F_REQUEST | NLM_F_DUMP, dump=True)

    def datagrams(self, msg_type: int, body: bytes, seq: int) -> list[bytes]:
        """The datagrams of one dump's answer, undecoded, for a whole-table reader
        (kernel_tables.py) that skips most messages unread. The caller picks SEQ: the
        same request with the same number gets a byte-identical answer from an
        unchanged table, which is what the resync's fingerprints compare."""
        flags = NLM_F_REQUEST | NLM_F_DUMP
        with self._lock:
            self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, seq, 0)
                           + body)
            out = []
            while True:
                out.append(self.sock.recv(1 << 18))
                if dump_ended(out[-1], seq):
                    return out

    def _exchange(self, msg_type: int, body: bytes, flags: int,
                  dump: bool) -> list[tuple[int, bytes]]:
        with self._lock:
            self._seq = self._seq % 0x7FFFFFFF + 1
            seq = self._seq
            self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, seq, 0)
                           + body)
            out: list[tuple[int, bytes]] = []
            while True:
                data = self.sock.recv(_RECV)
                for mtype, mseq, start, end in messages(data):
                    if mseq != seq:
                        continue  # the tail of an earlier request that raised
                    payload = data[start:end]
                    if mtype == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", payload)[0]
                        if err:
                            raise NetlinkError(err)
                        return out
                    if mtype == NLMSG_DONE:
                        if not dump:
                            continue
                        err = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
                        if err:
                            raise NetlinkError(err)
                        return out
                    out.append((mtype, payload))
