"""Network namespaces that reproduce the seed's figures: a host namespace whose uplink
`enp0s5` is a veth to a LAN namespace holding Computer X, and guests as namespaces behind
veths whose host ends play libvirt's vnetN.

One builder for everyone: `lab up` makes the fixed pair vzlab-host / vzlab-lan (its guests
come from the real libvirtd), the netns tests and bench make throw-away tagged ones with
guest namespaces. Only `ip` inside the namespaces; the root namespace is touched only by
`ip netns add/del` (the veth pair is made inside the host namespace).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import GATEWAY4, GATEWAY6
from . import settings as S
from .runner import in_netns
from .sh import LabError, run


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_possible() -> tuple[bool, str]:
    """Can this process make network namespaces? (ok, why not)."""
    if os.geteuid() != 0:
        return False, "needs root"
    if not shutil.which("ip"):
        return False, "iproute2 is not installed"
    name = f"vzt-probe-{uuid.uuid4().hex[:6]}"
    r = run(["ip", "netns", "add", name], check=False)
    if r.returncode != 0:
        return False, f"cannot create a network namespace: {r.stderr.strip()}"
    run(["ip", "netns", "del", name], check=False)
    return True, ""


@dataclass
class Guest:
    """A guest namespace behind a veth: `host_dev` in the host namespace, `guest_dev`
    inside `ns`."""

    name: str
    ns: str
    host_dev: str
    guest_dev: str
    mac: str
    ips: list[str]


@dataclass
class Topology:
    """Host + LAN (+ guests) namespaces named PREFIX-host, PREFIX-lan, PREFIX-gN.

    `throwaway()` gives a unique prefix so parallel runs stay apart; `tag` also seeds the
    guests' MACs."""

    prefix: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    guests: dict[str, Guest] = field(default_factory=dict)
    host_ns: str = ""  # default PREFIX-host; a host of the two-host lab names its own
    lan_ns: str = ""  # default PREFIX-lan

    def __post_init__(self) -> None:
        self.host = self.host_ns or f"{self.prefix}-host"
        self.lan = self.lan_ns or f"{self.prefix}-lan"

    @classmethod
    def throwaway(cls, tag: str | None = None) -> Topology:
        tag = tag or uuid.uuid4().hex[:6]
        return cls(prefix=f"vzt-{tag}", tag=tag)

    # ---------- building ----------
    def up(self, ipv6: bool = True) -> Topology:
        """Both namespaces, the uplink veth, the host's and Computer X's addresses."""
        for ns in (self.host, self.lan):
            self._add_netns(ns)
        self._uplink(S.HostSpec(self.host, S.LAN_DEV), ipv6)
        self._computer_x(ipv6)
        return self

    def up_lan(self, hosts: Sequence[S.HostSpec], ipv6: bool = True) -> Topology:
        """Several hosts on one LAN (the two-host lab): Computer X's `eth0` is a bridge
        in the LAN namespace whose ports are the peers of every host's uplink."""
        self._add_netns(self.lan)
        self.ip(self.lan, "link", "add", S.LAN_DEV, "type", "bridge", "forward_delay", "0",
                "mcast_snooping", "0")
        for spec in hosts:
            self.join_lan(spec, ipv6)
        self._computer_x(ipv6)
        return self

    def join_lan(self, spec: S.HostSpec, ipv6: bool = True) -> None:
        """One more namespace on the LAN bridge (a host, or the BGP fabric's router)."""
        self._add_netns(spec.netns)
        self._uplink(spec, ipv6)
        self.ip(self.lan, "link", "set", spec.lan_port, "master", S.LAN_DEV)

    def _uplink(self, spec: S.HostSpec, ipv6: bool) -> None:
        """The host's uplink, a veth made inside its namespace with the peer sent straight
        into the LAN namespace (nothing appears in the machine's own)."""
        self.ip(spec.netns, "link", "add", S.UPLINK, "type", "veth", "peer", "name",
                spec.lan_port, "netns", self.lan)
        self.ip(spec.netns, "addr", "add", spec.ip4, "dev", S.UPLINK)
        if ipv6:
            self.ip(spec.netns, "addr", "add", spec.ip6, "dev", S.UPLINK, "nodad")
        self.ip(spec.netns, "link", "set", S.UPLINK, "up")
        self.ip(self.lan, "link", "set", spec.lan_port, "up")

    def _computer_x(self, ipv6: bool) -> None:
        self.ip(self.lan, "addr", "add", f"{S.X_IP4}/{S.LAN_PREFIX4}", "dev", S.LAN_DEV)
        if ipv6:
            self.ip(self.lan, "addr", "add", f"{S.X_IP6}/64", "dev", S.LAN_DEV, "nodad")
        self.ip(self.lan, "link", "set", S.LAN_DEV, "up")

    def _add_netns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self.ip(ns, "link", "set", "lo", "up")
        self.sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
        self.sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")

    def add_guest(self, name: str, ips: list[str], host_dev: str | None = None,
                  guest_dev: str = "venet0", mac: str | None = None,
                  configure: bool = True) -> Guest:
        """A guest namespace behind a veth, configured like libvirt configures an LXC
        routed container: /32 (/128) addresses, on-link route to the gateway, default via it."""
        idx = len(self.guests) + 1
        ns = f"{self.prefix}-g{idx}"
        host_dev = host_dev or f"vnet{idx - 1}"
        mac = mac or f"52:54:00:aa:{self.tag[:2]}:{idx:02x}"
        self._add_netns(ns)
        self.ip(self.host, "link", "add", host_dev, "type", "veth", "peer", "name", guest_dev,
                "netns", ns)
        self.ip(ns, "link", "set", guest_dev, "address", mac)
        self.ip(ns, "link", "set", guest_dev, "up")
        guest = Guest(name, ns, host_dev, guest_dev, mac, ips)
        if configure:
            self.configure_guest(guest)
        self.guests[name] = guest
        return guest

    def add_bridged_guest(self, name: str, cidr: str, host_dev: str | None = None,
                          guest_dev: str = "eth0", mac: str | None = None) -> Guest:
        """A guest namespace behind a veth, configured as a bridged guest configures
        itself: an address on the LAN subnet, no gateway (Computer X is on-link)."""
        ip = cidr.split("/")[0]
        g = self.add_guest(name, [ip], host_dev=host_dev, guest_dev=guest_dev, mac=mac,
                           configure=False)
        fam = ["-6"] if ":" in ip else []
        self.ip(g.ns, *fam, "addr", "add", cidr, "dev", g.guest_dev,
                *(["nodad"] if fam else []))
        return g

    def add_client(self, name: str, via: str, subnet4: str, subnet6: str) -> str:
        """A client namespace PREFIX-NAME (Computer Y) on its own subnets behind namespace
        VIA, which routes for it: VIA takes the first address of each subnet, the client
        the second and its default routes through VIA. Returns the namespace."""
        ns = f"{self.prefix}-{name}"
        self._add_netns(ns)
        dev = f"to-{name}"[:15]
        self.ip(via, "link", "add", dev, "type", "veth", "peer", "name", S.LAN_DEV,
                "netns", ns)
        for subnet in (subnet4, subnet6):
            net = ipaddress.ip_network(subnet)
            router, client = (f"{net[n]}/{net.prefixlen}" for n in (1, 2))
            fam = "-6" if net.version == 6 else "-4"
            nodad = ["nodad"] if net.version == 6 else []
            self.ip(via, fam, "addr", "add", router, "dev", dev, *nodad)
            self.ip(ns, fam, "addr", "add", client, "dev", S.LAN_DEV, *nodad)
        self.ip(via, "link", "set", dev, "up")
        self.ip(ns, "link", "set", S.LAN_DEV, "up")
        for subnet in (subnet4, subnet6):
            net = ipaddress.ip_network(subnet)
            fam = "-6" if net.version == 6 else "-4"
            self.ip(ns, fam, "route", "add", "default", "via", str(net[1]))
        self.sysctl(via, "net.ipv4.ip_forward", "1")
        self.sysctl(via, "net.ipv6.conf.all.forwarding", "1")
        return ns

    def configure_guest(self, g: Guest) -> None:
        for ip in g.ips:
            if ":" in ip:
                self.ip(g.ns, "-6", "addr", "add", f"{ip}/128", "dev", g.guest_dev, "nodad")
            else:
                self.ip(g.ns, "addr", "add", f"{ip}/32", "dev", g.guest_dev)
        if any(":" not in ip for ip in g.ips):
            self.ip(g.ns, "route", "add", GATEWAY4, "dev", g.guest_dev, "scope", "link")
            self.ip(g.ns, "route", "add", "default", "via", GATEWAY4, "dev", g.guest_dev)
        if any(":" in ip for ip in g.ips):
            self.ip(g.ns, "-6", "route", "add", "default", "via", GATEWAY6, "dev",
                    g.guest_dev)

    def close(self) -> None:
        """Delete every namespace of this topology, also the host and LAN ones an earlier
        process made; their devices go with them, missing ones are fine."""
        for ns in dict.fromkeys([*reversed(self.namespaces), self.lan, self.host]):
            if netns_exists(ns):
                run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()

    # ---------- acting inside ----------
    def ip(self, ns: str, *args: str) -> str:
        return run(["ip", "-n", ns, *args], timeout=30).stdout

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.exec(ns, "sysctl", "-qw", f"{key}={value}", check=True)

    def exec(self, ns: str, *args: str, check: bool = False, timeout: float = 30):
        return run([*in_netns(ns), *args], check=check, timeout=timeout)

    def ping(self, ns: str, dst: str, count: int = 1, wait: int = 2, src: str | None = None,
             iface: str | None = None) -> bool:
        args = ["ping", "-n", "-c", str(count), "-W", str(wait)]
        if src or iface:
            args += ["-I", src or iface]
        return self.exec(ns, *args, dst, timeout=count * wait + 10).returncode == 0

    # ---------- reading the host ----------
    def healthy(self) -> bool:
        """Both namespaces there and the uplink UP."""
        if not (netns_exists(self.host) and netns_exists(self.lan)):
            return False
        out = run(["ip", "-n", self.host, "-br", "link", "show", S.UPLINK], check=False)
        return out.returncode == 0 and "UP" in out.stdout

    def link_master(self, ns: str, dev: str) -> str | None:
        parts = self.ip(ns, "-o", "link", "show", dev).split()
        return parts[parts.index("master") + 1] if "master" in parts else None

    def proxy_entries(self, dev: str = S.UPLINK) -> set[str]:
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

    def nft_elements(self, set_name: str) -> list:
        """The elements of one set of our `bridge vzlibvirt` table ([] when it is absent)."""
        kind = "map" if set_name == "ports" else "set"
        r = self.exec(self.host, "nft", "-j", "list", kind, "bridge", "vzlibvirt", set_name)
        if r.returncode != 0:
            if "No such file" not in r.stderr:
                raise LabError(f"nft list {kind} {set_name}: {r.stderr.strip()}")
            return []
        for obj in json.loads(r.stdout)["nftables"]:
            body = obj.get("set") or obj.get("map")
            if body is not None:
                return body.get("elem", [])
        return []
