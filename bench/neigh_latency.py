"""How long a host takes to answer neighbour discovery: ARP requests (IPv4) or neighbour
solicitations (IPv6) for TARGET, sent from IFACE, one at a time; prints JSON with the
reply times in microseconds. With --flood, it only sends broadcast ARP requests at a
given rate (the load of a LAN full of ARP). Standard library only, so it runs in any namespace:

    ip netns exec LAN python3 bench/neigh_latency.py eth0 198.51.100.50 --count 2000

The time includes this process's send and receive path (a constant); the difference
between two hosts is the host's own work, e.g. its proxy-entry lookup.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
ICMP6_FILTER = 1
NS, NA = 135, 136


def arp_probe(iface: str, target: str, count: int, timeout: float) -> list[float]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    mac = s.getsockname()[4]
    src = _own_address(iface, socket.AF_INET)
    tip = socket.inet_aton(target)
    frame = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
             + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac,
                           socket.inet_aton(src), b"\0" * 6, tip))
    s.settimeout(timeout)

    def answered(pkt: bytes) -> bool:
        return len(pkt) >= 42 and pkt[20:22] == b"\0\2" and pkt[28:32] == tip

    return _loop(s, lambda: s.send(frame), answered, count)


def arp_flood(iface: str, target: str, rate: float, seconds: float) -> int:
    """Broadcast ARP requests for TARGET at RATE per second for SECONDS (paced against
    the clock, so a slow send catches up); how many were sent (a frame the full queue
    refuses, ENOBUFS, is skipped, not retried)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    mac = s.getsockname()[4]
    frame = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
             + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac,
                           socket.inet_aton(_own_address(iface, socket.AF_INET)), b"\0" * 6,
                           socket.inet_aton(target)))
    t0 = time.monotonic()
    sent = dropped = 0
    while (now := time.monotonic() - t0) < seconds:
        due = int(now * rate) + 1
        while sent + dropped < due:
            try:
                s.send(frame)
                sent += 1
            except OSError as exc:  # the queue towards the host is full: not sent
                if exc.errno != errno.ENOBUFS:
                    raise
                dropped += 1
        time.sleep(max(0.0, (sent + dropped) / rate - (time.monotonic() - t0)))
    return sent


def ndp_probe(iface: str, target: str, count: int, timeout: float) -> list[float]:
    ifindex = socket.if_nametoindex(iface)
    tgt = ipaddress.IPv6Address(target)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    words = [0xFFFFFFFF] * 8  # block every ICMPv6 type but NA
    words[NA >> 5] &= ~(1 << (NA & 31))
    s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
    s.bind((_own_address(iface, socket.AF_INET6), 0, 0, ifindex))
    with open(f"/sys/class/net/{iface}/address") as fh:
        mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    snm = ipaddress.IPv6Address(b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + tgt.packed[13:])
    msg = struct.pack("!BBHI16sBB6s", NS, 0, 0, 0, tgt.packed, 1, 1, mac)
    s.settimeout(timeout)

    def answered(pkt: bytes) -> bool:
        return len(pkt) >= 24 and pkt[0] == NA and pkt[8:24] == tgt.packed

    return _loop(s, lambda: s.sendto(msg, (str(snm), 0, 0, ifindex)), answered, count)


def _loop(s: socket.socket, send, answered, count: int) -> list[float]:
    times = []
    lost = 0
    for _ in range(count):
        t0 = time.perf_counter_ns()
        send()
        try:
            while not answered(s.recv(2048)):
                pass
        except TimeoutError:
            lost += 1
            continue
        times.append((time.perf_counter_ns() - t0) / 1000)
        time.sleep(0.0005)  # one request at a time, as a LAN host sends them
    if lost:
        print(f"{lost} of {count} requests got no answer", file=sys.stderr)
    return times


def _own_address(iface: str, family: int) -> str:
    """The first global address of IFACE (IPv4: SIOCGIFADDR; IPv6: /proc/net/if_inet6)."""
    if family == socket.AF_INET:
        import fcntl

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        req = struct.pack("256s", iface.encode()[:15])
        return socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, req)[20:24])  # SIOCGIFADDR
    with open("/proc/net/if_inet6") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        addr, _idx, _plen, scope, _flags, name = line.split()
        if name == iface and scope == "00":
            return str(ipaddress.IPv6Address(bytes.fromhex(addr)))
    raise SystemExit(f"{iface} has no global IPv6 address")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface")
    ap.add_argument("target")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--flood", type=float, metavar="RATE",
                    help="instead: send RATE broadcast ARP requests per second, no waiting")
    ap.add_argument("--seconds", type=float, default=10, help="how long --flood sends")
    a = ap.parse_args()
    if a.flood:
        print(json.dumps({"sent": arp_flood(a.iface, a.target, a.flood, a.seconds)}))
        return 0
    probe = ndp_probe if ":" in a.target else arp_probe
    print(json.dumps(probe(a.iface, a.target, a.count, a.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
