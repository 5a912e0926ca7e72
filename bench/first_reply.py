"""Ping TARGET every INTERVAL until the first echo reply; print the CLOCK_MONOTONIC time
of that reply (comparable with the caller's time.monotonic()). Unlike `ping -c 1`, it
keeps going through "host unreachable" while the target does not exist yet. Standard
library only, raw ICMP socket (root):

    ip netns exec LAN python3 bench/first_reply.py 198.51.100.141
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def first_reply(target: str, interval: float, timeout: float) -> float | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline:
        seq = (seq + 1) & 0xFFFF
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        msg = struct.pack("!BBHHH", 8, 0, checksum(head + b"vzbench!"), ident, seq)
        with contextlib.suppress(OSError):  # no neighbour yet: keep trying
            s.sendto(msg + b"vzbench!", (target, 0))
        until = time.monotonic() + interval
        while (left := until - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            pkt, (src, _) = s.recvfrom(2048)
            icmp = pkt[(pkt[0] & 0xF) * 4:]
            if src == target and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return time.monotonic()
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    t = first_reply(a.target, a.interval, a.timeout)
    if t is None:
        print("no reply", file=sys.stderr)
        return 1
    print(f"{t:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
