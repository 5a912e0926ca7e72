"""The agent's view of the host's links: link events from a raw rtnetlink socket.

Why not pyroute2: it decodes every attribute of every link message into objects that
refer to each other, so only the cyclic garbage collector frees them. The start-up
dump of 10,000 guest devices alone grew the agent by ~250 MB (docs/performance.md), and
a burst of events cost ~0.2 ms each to decode. Here only the fixed header (index,
flags) and two attributes (the name, the link kind) are read, into small frozen
objects.

`LinkTracker` is the watcher's memory of which devices are up, turning events into
the agent's work (heal, forget, look for a hot-plugged interface's owner).

A burst of link changes (1,000 guests stopping) can overflow the socket's receive
buffer; the kernel then reports ENOBUFS once, and the events in between are lost.
`read` raises `Overflow` after raising the buffer, and the caller re-reads the links
with `dump` and compares (its picture of which devices are up is stale).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from vzlibvirt.kernel_tables import KernelTables
from vzlibvirt.rtnl import (
    IFF_LOWER_UP,
    IFF_UP,
    IFINFOMSG,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    NETLINK_ROUTE,
    RTM_DELLINK,
    RTM_NEWLINK,
    attrs,
    cstr,
    messages,
)

RTMGRP_LINK = 0x1
SO_RCVBUFFORCE = 33  # root may exceed net.core.rmem_max
RCVBUF_START = 1 << 20
RCVBUF_MAX = 1 << 27


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One link as a message describes it; `gone` for RTM_DELLINK."""

    index: int
    name: str
    flags: int
    kind: str | None
    gone: bool = False


class Overflow(Exception):
    """Link events were lost (ENOBUFS): re-read the links."""


class LinkWatch:
    """A socket on the link multicast group; bind before the first dump, so that no
    change falls between the two."""

    def __init__(self, rcvbuf: int = RCVBUF_START) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.rcvbuf = 0
        self._set_rcvbuf(rcvbuf)
        self.sock.bind((0, RTMGRP_LINK))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LinkWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _set_rcvbuf(self, size: int) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        self.rcvbuf = size

    def read(self) -> list[LinkEvent]:
        """The link events of the next datagram (blocks until one comes)."""
        try:
            data = self.sock.recv(1 << 16)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            if self.rcvbuf < RCVBUF_MAX:
                self._set_rcvbuf(min(self.rcvbuf * 4, RCVBUF_MAX))
            raise Overflow(f"link events lost (receive buffer now {self.rcvbuf >> 10} KiB)") \
                from None
        out = []
        for mtype, _seq, start, end in messages(data):
            if mtype in (RTM_NEWLINK, RTM_DELLINK):
                event = parse_link(data, start, end, mtype == RTM_DELLINK)
                if event is not None:
                    out.append(event)
        return out

    @staticmethod
    def dump() -> dict[int, LinkEvent]:
        """Every link now, by ifindex (one dump on a socket of its own)."""
        with KernelTables() as kt:
            links = (parse_link(data, off, end) for data, off, end in kt.raw_links())
            return {link.index: link for link in links if link is not None}


def parse_link(data: bytes, off: int, end: int, gone: bool = False) -> LinkEvent | None:
    """An ifinfomsg and its attributes at DATA[OFF:END]: only what the agent uses."""
    if end - off < IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, off)
    a = attrs(data, off + IFINFOMSG.size, end)
    info = a.get(IFLA_LINKINFO)
    kind = cstr(attrs(info).get(IFLA_INFO_KIND)) if info else None
    return LinkEvent(index, cstr(a.get(IFLA_IFNAME)) or "", flags, kind, gone)


@dataclass
class LinkWork:
    """What a batch of link events asks of the agent."""

    up_again: list[str] = field(default_factory=list)  # heal: entries may be flushed
    gone: list[tuple[str, int]] = field(default_factory=list)  # (name, ifindex)
    new_veths: list[str] = field(default_factory=list)  # maybe a hot-plugged interface


class LinkTracker:
    """Which devices are up (with carrier), and which ever were: the watcher's memory,
    a few bytes per device."""

    def __init__(self, links: dict[int, LinkEvent]):
        self.up = {index: _running(link.flags) for index, link in links.items()}
        self.names = {index: link.name for index, link in links.items()}
        self.ever_up = {index for index, up in self.up.items() if up}

    def feed(self, events: Iterable[LinkEvent]) -> LinkWork:
        work = LinkWork()
        up_again: set[str] = set()
        for ev in events:
            if ev.gone:
                self.up.pop(ev.index, None)
                self.ever_up.discard(ev.index)
                name = self.names.pop(ev.index, None) or ev.name
                if name:
                    work.gone.append((name, ev.index))
                continue
            if ev.index not in self.up and ev.kind == "veth" and ev.name:
                work.new_veths.append(ev.name)
            is_up = _running(ev.flags)
            if is_up and self.up.get(ev.index) is False and ev.index in self.ever_up \
                    and ev.name:
                up_again.add(ev.name)
            self.up[ev.index] = is_up
            if ev.name:
                self.names[ev.index] = ev.name
            if is_up:
                self.ever_up.add(ev.index)
        work.up_again = sorted(up_again)
        return work

    def missed(self, now: dict[int, LinkEvent]) -> list[LinkEvent]:
        """The events that turn what we knew into NOW (a fresh dump): the devices that
        vanished, then every device as it is (feed() picks out the changes)."""
        gone = [LinkEvent(index, self.names.get(index, ""), 0, None, gone=True)
                for index in self.up if index not in now]
        return [*gone, *now.values()]


def _running(flags: int) -> bool:
    """Up and with carrier: losing either can lose our entries."""
    return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
