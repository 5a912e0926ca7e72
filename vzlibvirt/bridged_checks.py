"""Cheap checks on bridges (no netlink): does the bridge a guest needs exist?

`socket.if_nametoindex` asks the kernel of the current network namespace through one
ioctl, which keeps `prepare` free of the pyroute2 import.
"""

from __future__ import annotations

import socket

from vzlibvirt.errors import VzError
from vzlibvirt.model import Domain, Mode


def bridge_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def missing_bridge_error(bridge: str) -> str:
    return (f"bridge {bridge} does not exist; create it with "
            f"'vzlibvirt bridge create {bridge} --uplink DEV' (or without --uplink for a "
            f"guests-only bridge)")


def check_bridges_exist(domain: Domain, config) -> None:
    """Refuse at `prepare` a bridged interface whose bridge is missing."""
    for iface in domain.interfaces:
        if iface.mode is Mode.BRIDGED:
            bridge = iface.bridge or (None if iface.plugged_by_libvirt else config.bridged.bridge)
        elif iface.type == "bridge":
            bridge = iface.bridge
        else:
            continue
        if bridge and not bridge_exists(bridge):
            raise VzError(missing_bridge_error(bridge), mac=iface.label)
