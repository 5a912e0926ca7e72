"""Is a guest IP already answered on the LAN? An ARP probe / neighbour solicitation.

Before the host claims an address with a proxy entry it asks the LAN, on each neighbour
device, whether anyone else holds it: an RFC 5227 ARP probe (sender IP 0.0.0.0) for
IPv4, a multicast neighbour solicitation for IPv6. A reply within the timeout
is a conflict; silence, or an error while probing, counts as free (like Incus: a probe
that cannot run must not block every guest start).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
ICMP6_NS, ICMP6_NA = 135, 136


def probe(ifname: str, our_mac: str, ip: str, timeout_ms: int) -> str | None:
    """The MAC of another host answering for `ip` on `ifname`, or None."""
    try:
        if ":" in ip:
            return _probe6(ifname, our_mac, ip, timeout_ms)
        return _probe4(ifname, our_mac, ip, timeout_ms)
    except OSError:
        return None


def _probe4(ifname: str, our_mac: str, ip: str, timeout_ms: int) -> str | None:
    mac = bytes.fromhex(our_mac.replace(":", ""))
    target = ipaddress.IPv4Address(ip).packed
    frame = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + b"\0" * 4 + b"\0" * 6 + target
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        s.send(frame)
        for pkt in _receive(s, timeout_ms):
            if len(pkt) < 42 or pkt[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", pkt[20:22])[0]
            sender_mac, sender_ip = pkt[22:28], pkt[28:32]
            if op == 2 and sender_ip == target and sender_mac != mac:
                return sender_mac.hex(":")
    return None


def _probe6(ifname: str, our_mac: str, ip: str, timeout_ms: int) -> str | None:
    target = ipaddress.IPv6Address(ip)
    ifindex = socket.if_nametoindex(ifname)
    solicited = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + target.packed[13:]
    mac = bytes.fromhex(our_mac.replace(":", ""))
    # from the device's link-local address (a raw socket cannot send from ::), so the
    # source link-layer option is required for the owner to answer
    ns = struct.pack("!BBHI", ICMP6_NS, 0, 0, 0) + target.packed + b"\x01\x01" + mac
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.bind(("::", 0, 0, ifindex))
        s.sendto(ns, (str(ipaddress.IPv6Address(solicited)), 0, 0, ifindex))
        for pkt in _receive(s, timeout_ms):
            if len(pkt) < 24 or pkt[0] != ICMP6_NA or pkt[8:24] != target.packed:
                continue
            tlla = _option(pkt[24:], 2)
            if tlla is None or tlla != mac:
                return tlla.hex(":") if tlla else "unknown"
    return None


def _receive(s: socket.socket, timeout_ms: int):
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([s], [], [], left)
        if ready:
            yield s.recv(2048)


def _option(opts: bytes, kind: int) -> bytes | None:
    while len(opts) >= 8:
        otype, olen = opts[0], opts[1] * 8
        if olen == 0:
            return None
        if otype == kind:
            return opts[2:8]
        opts = opts[olen:]
    return None
