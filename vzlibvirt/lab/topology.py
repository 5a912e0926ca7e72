"""The lab's two network namespaces: vzlab-host (the libvirt host, uplink enp0s5) and
vzlab-lan (Computer X on eth0), joined by one veth pair. Only `ip` inside them."""

from __future__ import annotations

from pathlib import Path

from . import settings as S
from .sh import in_netns, run


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def create() -> None:
    """Make both namespaces and the LAN link; the root netns is touched only by creating
    the veth pair directly inside vzlab-host (never in the root namespace)."""
    for ns in (S.HOST_NETNS, S.LAN_NETNS):
        run(["ip", "netns", "add", ns])
        run(in_netns(ns, ["ip", "link", "set", "lo", "up"]))
    # Created inside vzlab-host, the peer moved straight to vzlab-lan.
    run(
        in_netns(
            S.HOST_NETNS,
            ["ip", "link", "add", S.UPLINK, "type", "veth", "peer", "name", S.LAN_DEV,
             "netns", S.LAN_NETNS],
        )
    )
    host = [
        ["ip", "addr", "add", S.HOST_IP4, "dev", S.UPLINK],
        ["ip", "-6", "addr", "add", S.HOST_IP6, "dev", S.UPLINK, "nodad"],
        ["ip", "link", "set", S.UPLINK, "up"],
    ]
    lan = [
        ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"],
        ["ip", "addr", "add", f"{S.X_IP4}/24", "dev", S.LAN_DEV],
        ["ip", "-6", "addr", "add", f"{S.X_IP6}/64", "dev", S.LAN_DEV, "nodad"],
        ["ip", "link", "set", S.LAN_DEV, "up"],
    ]
    for cmd in host:
        run(in_netns(S.HOST_NETNS, cmd))
    for cmd in lan:
        run(in_netns(S.LAN_NETNS, cmd))


def destroy() -> None:
    """Delete both namespaces (their devices go with them); missing ones are fine."""
    for ns in (S.HOST_NETNS, S.LAN_NETNS):
        if netns_exists(ns):
            run(["ip", "netns", "del", ns])


def healthy() -> bool:
    if not (netns_exists(S.HOST_NETNS) and netns_exists(S.LAN_NETNS)):
        return False
    out = run(in_netns(S.HOST_NETNS, ["ip", "-br", "link", "show", S.UPLINK]), check=False)
    return out.returncode == 0 and "UP" in out.stdout and bridge_holds_uplink()


def bridge_holds_uplink() -> bool:
    """Is the uplink a port of the lab's br0 (made by `lab up`)?"""
    out = run(in_netns(S.HOST_NETNS, ["ip", "-o", "link", "show", "master", S.BRIDGE]),
              check=False)
    return out.returncode == 0 and f" {S.UPLINK}@" in out.stdout
