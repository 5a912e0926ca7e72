"""Cheap checks on bridges (no netlink): does the bridge a guest needs exist?

netdev asks the kernel of the current network namespace through one ioctl, which keeps
`prepare` free of the pyroute2 import.
"""

from __future__ import annotations

from vzlibvirt import netdev
from vzlibvirt.errors import VzError, missing_bridge_error
from vzlibvirt.model import Domain, Mode
from vzlibvirt.plan import bridge_for


def check_bridges_exist(domain: Domain, config) -> None:
    """Refuse at `prepare` a bridged interface whose bridge is missing."""
    for iface in domain.interfaces:
        if iface.mode is Mode.BRIDGED:
            bridge = bridge_for(iface, config)
        elif iface.type == "bridge":
            bridge = iface.bridge
        else:
            continue
        if bridge and not netdev.exists(bridge):
            raise VzError(missing_bridge_error(bridge), mac=iface.label)
