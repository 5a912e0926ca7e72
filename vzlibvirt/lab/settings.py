"""Where the lab lives and the seed's numbers, which the lab, the netns tests and bench
share through lab.topology and lab.domxml."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

LAB_PREFIX = "vzlab"  # the lab's namespaces; throw-away test topologies use vzt-TAG
HOST_NETNS = f"{LAB_PREFIX}-host"
LAN_NETNS = f"{LAB_PREFIX}-lan"
UPLINK = "enp0s5"
# `lab up` makes br0 over the uplink (seed 5.2.1.2 / 5.2.2.1). Once the uplink is a bridge
# port, ARP and NDP from the LAN arrive on br0, so routed guests' proxy entries live there.
BRIDGE = "br0"
NEIGH_DEV = BRIDGE
LAN_DEV = "eth0"
HOST_IP4 = "198.51.100.2/24"
HOST_IP6 = "2001:db8:100::2/64"
X_IP4 = "198.51.100.10"
X_IP6 = "2001:db8:100::10"
LAN_PREFIX4 = 24
LAN_GATEWAY4 = HOST_IP4.split("/")[0]  # bridged guests' default gateway: the lab host



@dataclass(frozen=True)
class HostSpec:
    """One lab host: its network namespace, its uplink's addresses and its peer in the
    LAN namespace; a host of the two-host lab also has its own UTS namespace (hostname),
    libvirt host UUID, and a libvirtd listening for migrations on its LAN address."""

    netns: str
    lan_port: str  # the uplink's peer in the LAN namespace
    ip4: str = HOST_IP4
    ip6: str = HOST_IP6
    hostname: str = ""  # "": the machine's UTS namespace (the one-host lab)
    host_uuid: str = ""  # "": libvirt's own (random here: dmidecode fails)
    asn: int = 0  # its AS number in the BGP fabric (`lab up --hosts 2 --bgp`)

    @property
    def address4(self) -> str:
        return self.ip4.split("/")[0]

    @property
    def migrates(self) -> bool:
        return bool(self.hostname)


HOST = HostSpec(HOST_NETNS, LAN_DEV)  # the one-host lab
# The two-host lab (`lab up --hosts 2`): names apart from the one-host lab's, so neither
# `down` touches the other's; both uplinks on one bridge in the LAN namespace.
TWO_PREFIX = f"{LAB_PREFIX}2"
TWO_LAN_NETNS = f"{TWO_PREFIX}-lan"
HOSTS_TWO = (
    HostSpec(f"{TWO_PREFIX}-a", "lan-a", "198.51.100.2/24", "2001:db8:100::2/64",
             "vzlab-a", "8d3c1f8e-0a6b-4f2e-9a51-00000000000a", 65001),
    HostSpec(f"{TWO_PREFIX}-b", "lan-b", "198.51.100.3/24", "2001:db8:100::3/64",
             "vzlab-b", "8d3c1f8e-0a6b-4f2e-9a51-00000000000b", 65002),
)
# The BGP fabric of the two-host lab (`--bgp`, lab/fabric.py): the LAN is the transit
# subnet, the top-of-rack router sits on it (FRR), Computer Y on a client subnet behind
# the router; the hosts announce their guests' routes, which live in subnets of their own.
ROUTER = HostSpec(f"{TWO_PREFIX}-rtr", "lan-r", "198.51.100.1/24", "2001:db8:100::1/64",
                  asn=65000)
Y_NAME = "y"  # namespace vzlab2-y
Y_NET4, Y_NET6 = "203.0.113.192/28", "2001:db8:300::/64"
Y_IP4, Y_IP6 = "203.0.113.194", "2001:db8:300::2"  # the second address of each subnet
FABRIC_EXPORT4, FABRIC_EXPORT6 = "203.0.113.0/26", "2001:db8:200::/64"

# Host directories that libvirtd needs; in the lab each is a bind mount of a lab dir,
# made only inside libvirtd's private mount namespace.
LIBVIRT_DIRS = {
    "etc": "/etc/libvirt",
    "hooks": "/etc/libvirt/hooks",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}


def default_root() -> Path:
    return Path(os.environ.get("VZLAB_DIR", "/run/vzlibvirt-lab"))


def two_host_paths(spec: HostSpec) -> LabPaths:
    """Host A's (B's) lab dir beside the one-host lab's, e.g. /run/vzlibvirt-lab2/a."""
    base = default_root()
    return LabPaths(root=base.with_name(base.name + "2") / spec.netns.rsplit("-", 1)[1])


def _under(*parts: str) -> property:
    """A path under the lab root (read-only attribute of LabPaths)."""
    return property(lambda self: self.root.joinpath(*parts))


@dataclass(frozen=True)
class LabPaths:
    """Every path the lab uses; `root` is removed whole by `lab down`, `cache` is kept."""

    root: Path = field(default_factory=lambda: default_root())
    cache: Path = field(
        default_factory=lambda: Path(os.environ.get("VZLAB_CACHE", "/var/cache/vzlibvirt-lab"))
    )

    def lab(self, key: str) -> Path:
        """The lab directory that stands in for LIBVIRT_DIRS[key]."""
        return self.root / key

    etc = _under("etc")
    hooks = _under("hooks")
    run = _under("run")
    guests = _under("guests")
    state = _under("vzlibvirt-state")
    config = _under("vzlibvirt.toml")
    record = _under("lab.json")  # what `up` made (pids, mount points), read by `down`
    hooklog = _under("hook-calls.log")
    agent_log = _under("log", "agent.log")  # the lab agent's output (lab/agent.py)
    socket = _under("run", "libvirt-sock")

    def uri(self, driver: str) -> str:
        return f"{driver}:///system?socket={self.socket}"
