"""Test scaffolding: throw-away network namespaces that reproduce the seed's figures.

A host namespace holds the uplink `enp0s5`, a veth whose peer sits in a LAN namespace
with Computer X; each guest is a namespace behind a veth whose host end plays libvirt's
vnetN. Everything is created with `ip` (scaffolding, not product) under a unique prefix
and removed in close(), which the fixtures call also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LAN4 = "198.51.100"
HOST_UPLINK_IP4 = f"{LAN4}.2"
X_IP4 = f"{LAN4}.10"
HOST_UPLINK_IP6 = "2001:db8:100::2"
X_IP6 = "2001:db8:100::10"
REPO = Path(__file__).resolve().parent.parent


def sh(*args: str, check: bool = True, input: bytes | None = None,
       timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, check=check, input=input, timeout=timeout)


def netns_possible() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root"
    if not shutil.which("ip"):
        return False, "iproute2 is not installed"
    name = f"vzt-probe-{uuid.uuid4().hex[:6]}"
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return False, f"cannot create a network namespace: {r.stderr.decode().strip()}"
    sh("ip", "netns", "del", name, check=False)
    return True, ""


@dataclass
class Guest:
    name: str
    ns: str
    host_dev: str
    guest_dev: str
    mac: str
    ips: list[str]


@dataclass
class Topology:
    """Host + LAN (+ guests) namespaces; `tag` keeps parallel runs apart."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    guests: dict[str, Guest] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.host = f"vzt-{self.tag}-host"
        self.lan = f"vzt-{self.tag}-lan"

    # building
    def up(self, ipv6: bool = True) -> Topology:
        for ns in (self.host, self.lan):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        for ns in (self.host, self.lan):
            self.sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
            self.sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        self.ip(self.host, "link", "add", "enp0s5", "type", "veth", "peer", "name", "eth0",
                "netns", self.lan)
        self.ip(self.host, "addr", "add", f"{HOST_UPLINK_IP4}/24", "dev", "enp0s5")
        self.ip(self.lan, "addr", "add", f"{X_IP4}/24", "dev", "eth0")
        if ipv6:
            self.ip(self.host, "addr", "add", f"{HOST_UPLINK_IP6}/64", "dev", "enp0s5",
                    "nodad")
            self.ip(self.lan, "addr", "add", f"{X_IP6}/64", "dev", "eth0", "nodad")
        self.ip(self.host, "link", "set", "enp0s5", "up")
        self.ip(self.lan, "link", "set", "eth0", "up")
        return self

    def add_guest(self, name: str, ips: list[str], host_dev: str | None = None,
                  guest_dev: str = "venet0", mac: str | None = None,
                  configure: bool = True) -> Guest:
        """A guest namespace behind a veth, configured like libvirt configures an LXC
        routed container: /32 (/128) addresses, on-link route to the gateway, default via it."""
        idx = len(self.guests) + 1
        ns = f"vzt-{self.tag}-g{idx}"
        host_dev = host_dev or f"vnet{idx - 1}"
        mac = mac or f"52:54:00:aa:{self.tag[:2]}:{idx:02x}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self.ip(ns, "link", "set", "lo", "up")
        self.sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
        self.sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        self.ip(self.host, "link", "add", host_dev, "type", "veth", "peer", "name", guest_dev,
                "netns", ns)
        self.ip(ns, "link", "set", guest_dev, "address", mac)
        self.ip(ns, "link", "set", guest_dev, "up")
        guest = Guest(name, ns, host_dev, guest_dev, mac, ips)
        if configure:
            self.configure_guest(guest)
        self.guests[name] = guest
        return guest

    def configure_guest(self, g: Guest) -> None:
        for ip in g.ips:
            if ":" in ip:
                self.ip(g.ns, "-6", "addr", "add", f"{ip}/128", "dev", g.guest_dev, "nodad")
            else:
                self.ip(g.ns, "addr", "add", f"{ip}/32", "dev", g.guest_dev)
        if any(":" not in ip for ip in g.ips):
            self.ip(g.ns, "route", "add", "169.254.0.1", "dev", g.guest_dev, "scope", "link")
            self.ip(g.ns, "route", "add", "default", "via", "169.254.0.1", "dev", g.guest_dev)
        if any(":" in ip for ip in g.ips):
            self.ip(g.ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", g.guest_dev)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    # inspecting
    def ip(self, ns: str, *args: str) -> str:
        return sh("ip", "-n", ns, *args).stdout.decode()

    def sysctl(self, ns: str, key: str, value: str) -> None:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}")

    def exec(self, ns: str, *args: str, check: bool = False, timeout: float = 30):
        return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)

    def ping(self, ns: str, dst: str, count: int = 1, wait: int = 2, src: str | None = None,
             iface: str | None = None) -> bool:
        args = ["ping", "-n", "-c", str(count), "-W", str(wait)]
        if src:
            args += ["-I", src]
        elif iface:
            args += ["-I", iface]
        r = self.exec(ns, *args, dst, timeout=count * wait + 10)
        return r.returncode == 0

    def proxy_entries(self, dev: str = "enp0s5") -> set[str]:
        out = self.ip(self.host, "neigh", "show", "proxy", "dev", dev)
        out += self.ip(self.host, "-6", "neigh", "show", "proxy", "dev", dev)
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def host_routes(self, family: str = "-4") -> list[str]:
        return [line.strip() for line in self.ip(self.host, family, "route").splitlines()]

    def route_to(self, ip: str) -> str | None:
        fam = "-6" if ":" in ip else "-4"
        for line in self.ip(self.host, fam, "route", "show", ip).splitlines():
            if line.split()[0] in (ip, f"{ip}/32", f"{ip}/128"):
                return line.strip()
        return None


def wait_for(pred, timeout: float = 30, interval: float = 0.05):
    """Poll PRED until it returns something true or TIMEOUT passes; its last value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def host_snapshot(topo: Topology) -> dict[str, object]:
    """Everything of the host namespace that wiring may touch, in comparable form."""
    ns = topo.host
    sysctls = topo.exec(ns, "sysctl", "-a", check=True).stdout.decode().splitlines()
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


# bridged mode (issue 4): guests that own their MAC and sit on the LAN subnet

def add_bridged_guest(topo: Topology, name: str, cidr: str, host_dev: str | None = None,
                      guest_dev: str = "eth0", mac: str | None = None) -> Guest:
    """A guest namespace behind a veth, configured as a bridged guest configures itself:
    an address on the LAN subnet, no gateway (Computer X is on-link)."""
    ip = cidr.split("/")[0]
    g = topo.add_guest(name, [ip], host_dev=host_dev, guest_dev=guest_dev, mac=mac,
                       configure=False)
    fam = ["-6"] if ":" in ip else []
    topo.ip(g.ns, *fam, "addr", "add", cidr, "dev", g.guest_dev, *(["nodad"] if fam else []))
    return g


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
    import subprocess
    import sys

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


def link_master(topo: Topology, ns: str, dev: str) -> str | None:
    out = topo.ip(ns, "-o", "link", "show", dev)
    parts = out.split()
    return parts[parts.index("master") + 1] if "master" in parts else None


def nft_elements(topo: Topology, set_name: str) -> list:
    """The elements of one set of our `bridge vzlibvirt` table ([] when it is absent)."""
    import json

    kind = "map" if set_name == "ports" else "set"
    r = topo.exec(topo.host, "nft", "-j", "list", kind, "bridge", "vzlibvirt", set_name)
    if r.returncode != 0:
        assert b"No such file" in r.stderr, r.stderr
        return []
    for obj in json.loads(r.stdout)["nftables"]:
        body = obj.get("set") or obj.get("map")
        if body is not None:
            return body.get("elem", [])
    return []
