"""IPv6 router advertisements on routed VM taps: "your default router is fe80::1".

Why our own sender and not dnsmasq's `enable-ra`: dnsmasq advertises only for taps that
hold a prefix of one of its DHCPv6 ranges (ours hold only fe80::1/128), and it leaves the
source address to the kernel, which may pick the tap's own EUI-64 link-local address
instead of fe80::1. This sends from fe80::1 explicitly (IPV6_PKTINFO), with no prefix
option (the guest's /128 is static or its own business) and M/O flags clear, so a
stock guest with accept_ra installs `default via fe80::1`. It answers router
solicitations at once and repeats every INTERVAL seconds. The taps come from the state
records: those of routed QEMU interfaces with an IPv6 address.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path

from vzlibvirt.model import Mode
from vzlibvirt.state import StateStore

log = logging.getLogger("vzlibvirt.ra")
INTERVAL = 60.0  # seconds between unsolicited RAs (RFC 4861 allows 4..1800)
LIFETIME = 1800  # router lifetime, seconds: outlives many missed RAs
ICMP6_FILTER = 1
ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT = 133, 134
ALL_NODES = "ff02::1"


def ra_packet(mac: bytes | None) -> bytes:
    """An RA without prefixes: hop limit 64, flags 0, router lifetime, no timers; the
    kernel fills in the checksum of a raw ICMPv6 socket."""
    body = struct.pack("!BBHBBHII", ND_ROUTER_ADVERT, 0, 0, 64, 0, LIFETIME, 0, 0)
    if mac and len(mac) == 6:
        body += struct.pack("!BB", 1, 1) + mac  # source link-layer address option
    return body


def _pktinfo(src: str, ifindex: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
            socket.inet_pton(socket.AF_INET6, src) + struct.pack("@I", ifindex))


class RouterAdvertiser:
    """One raw ICMPv6 socket for every tap; runs in its own thread."""

    def __init__(self, store: StateStore, gateway6: str):
        self.store = store
        self.gateway6 = gateway6
        self.stopping = threading.Event()
        self.taps: dict[int, str] = {}  # ifindex -> name
        self._seen_mtime: int | None = None
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        # receive router solicitations only (the filter is a bitmap of types to block)
        blocked = [0xFFFFFFFF] * 8
        blocked[ND_ROUTER_SOLICIT >> 5] &= ~(1 << (ND_ROUTER_SOLICIT & 31))
        self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))

    def refresh(self) -> None:
        """Re-read the records only when the domains dir changed (a record was written)."""
        try:
            mtime = os.stat(self.store.domains).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._seen_mtime:
            return
        self._seen_mtime = mtime
        taps: dict[int, str] = {}
        for record in self.store.records():
            if record.driver != "qemu" or record.phase != "wired":
                continue
            for irec in record.interfaces:
                if irec.mode is Mode.ROUTED and any(":" in ip for ip in irec.ips):
                    taps[irec.ifindex] = irec.host_dev
        new = set(taps) - set(self.taps)
        self.taps = taps
        for ifindex in sorted(new):
            self.advertise(ifindex)

    def advertise(self, ifindex: int, dst: str = ALL_NODES) -> None:
        name = self.taps.get(ifindex)
        if name is None:
            return
        try:
            mac = bytes.fromhex(Path(f"/sys/class/net/{name}/address").read_text()
                                .strip().replace(":", ""))
        except (OSError, ValueError):
            mac = None
        try:
            self.sock.sendmsg([ra_packet(mac)], [_pktinfo(self.gateway6, ifindex)], 0,
                              (dst, 0, 0, ifindex))
        except OSError as exc:  # tap gone or fe80::1 not (yet) on it: the next round
            log.debug("RA on %s: %s", name, exc)

    def run(self) -> None:
        next_round = 0.0
        while not self.stopping.is_set():
            self.refresh()  # new taps get an RA at once
            if time.monotonic() >= next_round:
                for ifindex in list(self.taps):
                    self.advertise(ifindex)
                next_round = time.monotonic() + INTERVAL
            ready, _, _ = select.select([self.sock], [], [], 1.0)
            if ready:
                self._solicited()
        self.sock.close()

    def _solicited(self) -> None:
        try:
            _data, anc, _flags, addr = self.sock.recvmsg(1500, 256)
        except OSError:
            return
        ifindex = addr[3] if len(addr) > 3 else 0
        for level, kind, value in anc:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                ifindex = struct.unpack("@I", value[16:20])[0]
        self.refresh()
        if ifindex in self.taps:
            src = addr[0].split("%")[0]
            self.advertise(ifindex, src if src != "::" else ALL_NODES)

    def stop(self) -> None:
        self.stopping.set()


def start_in_thread(store: StateStore, gateway6: str) -> RouterAdvertiser | None:
    """Advertise in a daemon thread beside the DHCP supervisor; None (logged) when the
    raw socket cannot be opened."""
    try:
        adverts = RouterAdvertiser(store, gateway6)
    except OSError as exc:
        log.error("no IPv6 router advertisements: %s", exc)
        return None
    threading.Thread(target=adverts.run, name="router-adverts", daemon=True).start()
    return adverts
