"""What the netns tests read and send besides the topology's own views: a comparable
snapshot of the host namespace, and UDP that shows which source address got through."""

from __future__ import annotations

import subprocess
import sys

from vzlibvirt.lab.topology import Topology


def host_snapshot(topo: Topology) -> dict[str, object]:
    """Everything of the host namespace that wiring may touch, in comparable form."""
    ns = topo.host
    sysctls = topo.exec(ns, "sysctl", "-a", check=True).stdout.splitlines()
    keep = ("forwarding", "proxy_arp", "rp_filter", "proxy_ndp", "proxy_delay", "accept_ra",
            "disable_ipv6")
    links = []
    for line in topo.ip(ns, "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        links.append((name, "state UP" in line or ",UP" in line))
    return {
        "routes4": topo.ip(ns, "-4", "route", "show", "table", "all"),
        "routes6": topo.ip(ns, "-6", "route", "show", "table", "all"),
        "proxy": sorted(topo.ip(ns, "neigh", "show", "proxy").splitlines()
                        + topo.ip(ns, "-6", "neigh", "show", "proxy").splitlines()),
        "addrs": topo.ip(ns, "-o", "addr", "show"),
        "links": sorted(links),
        "sysctl": sorted(s for s in sysctls if any(k in s for k in keep)
                         and ".stable_secret" not in s),
    }


UDP_LISTEN = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
print('ready', flush=True)
s.settimeout(float(sys.argv[3]))
try:
    data, addr = s.recvfrom(2048)
    print('got', addr[0], data.decode(), flush=True)
except socket.timeout:
    print('none', flush=True)
"""

UDP_SEND = r"""
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
if sys.argv[1] != '-':
    s.bind((sys.argv[1], 0))
for _ in range(int(sys.argv[4])):
    try:
        s.sendto(b'vzt-probe', (sys.argv[2], int(sys.argv[3])))
    except OSError:
        pass
    time.sleep(0.2)
"""


def udp_reaches(topo: Topology, src_ns: str, src_ip: str | None, dst_ns: str, dst: str,
                listen: str = "0.0.0.0", port: int = 40404, tries: int = 10) -> str | None:
    """Send a few datagrams from `src_ns` (bound to `src_ip`) to `dst` (an address or a
    broadcast); the source address the listener in `dst_ns` saw, or None. Bounded: the
    listener gives up after the sender's last try."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, sys.executable, "-c", UDP_LISTEN, listen, str(port),
         str(tries * 0.2 + 2)], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        topo.exec(src_ns, sys.executable, "-c", UDP_SEND, src_ip or "-", dst, str(port),
                  str(tries), timeout=tries + 20)
        out, _ = listener.communicate(timeout=tries + 20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    line = out.strip()
    return line.split()[1] if line.startswith("got") else None
