"""Tell the LAN at once that the host now answers for a guest IP.

IPv4: a gratuitous ARP request (sender = target = the guest IP, sender MAC = the
neighbour device's MAC). IPv6: an unsolicited neighbour advertisement to ff02::1 with
the override flag and our MAC as target link-layer address. Both go out through raw
sockets from the standard library: no subprocess, no pyroute2.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


_sockets: dict[str, socket.socket] = {}


def _socket(kind: str) -> socket.socket:
    """One socket per kind for the life of the process: closing a packet socket waits for
    an RCU grace period (~10 ms), which a long-lived agent should pay once, not per guest."""
    s = _sockets.get(kind)
    if s is None:
        if kind == "arp":
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        _sockets[kind] = s
    return s


def gratuitous_arp(ifindex: int, mac: str, ip: str) -> None:
    src = _mac_bytes(mac)
    addr = ipaddress.IPv4Address(ip).packed
    frame = BROADCAST + src + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # ethernet, IPv4, request
    frame += src + addr + b"\x00" * 6 + addr
    _socket("arp").sendto(frame, (_ifname(ifindex), ETH_P_ARP))


def unsolicited_na(ifindex: int, mac: str, ip: str) -> None:
    target = ipaddress.IPv6Address(ip).packed
    # type 136, code 0, checksum (kernel fills it), flags: Override (not Router/Solicited)
    msg = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target
    msg += struct.pack("!BB", 2, 1) + _mac_bytes(mac)  # target link-layer address option
    s = _socket("na")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    s.sendto(msg, ("ff02::1", 0, 0, ifindex))


def _ifname(ifindex: int) -> str:
    return socket.if_indextoname(ifindex)


def announce(ifindex: int, mac: str, ip: str) -> None:
    if ":" in ip:
        unsolicited_na(ifindex, mac, ip)
    else:
        gratuitous_arp(ifindex, mac, ip)
