"""An LXC guest's veth keeps the MAC its domain XML gives it, whatever udev does.

libvirt creates each veth pair of a container and only then sets the container end's
MAC. systemd-udevd, by the MACAddressPolicy=persistent of the default .link file on
Debian 12 (and most systemd hosts), gives every new virtual device a MAC of its own;
when it reads the new device before libvirt's set and writes after it, udev's MAC wins
and the guest runs with a MAC that no XML names (3 starts in 10 on the system VM). A
bridged port filtered by MAC then drops every frame the guest sends, and nothing says
why. Docker and LXD met the same race (moby/libnetwork#2380, canonical/lxd#11399).

At LXC's `start` hook the container end is still in the host namespace under the name
`<guest actual=...>`, down, without addresses: wait until udev is done with it (its
database entry exists), then set the MAC back if it differs. Later would be too late:
once the container has brought the device up, its IPv6 link-local address stays the
one of udev's MAC.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from vzlibvirt import contract
from vzlibvirt.errors import HostError
from vzlibvirt.model import Domain
from vzlibvirt.netlink import Netlink, NetlinkError, error_text

log = logging.getLogger("vzlibvirt")
UDEV_WAIT_S = 2.0  # udev handles a veth in milliseconds; a busy host may take longer
POLL_S = 0.005


def udev_sees_devices(control: str = contract.UDEV_CONTROL) -> bool:
    """udevd runs, and in this network namespace: the uevents of devices in any other
    namespace never reach it (the lab's and the tests' namespaces)."""
    if not os.path.exists(control):
        return False
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return True  # cannot tell: a bounded wait rather than the race


def wait_udev_done(ifindex: int, data_dir: str = contract.UDEV_DATA_DIR,
                   timeout: float = UDEV_WAIT_S) -> bool:
    """Until udev has written its database entry of the device (n<ifindex>), which it
    does once its rules, the MAC policy among them, are applied; False on timeout."""
    path = Path(data_dir) / f"n{ifindex}"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def restore_container_macs(domain: Domain, nl: Netlink, *, udev: bool | None = None,
                           data_dir: str = contract.UDEV_DATA_DIR) -> list[str]:
    """Set the container end of each of DOMAIN's veths back to its XML MAC where it
    differs; the names of the devices set. UDEV: wait for udev first (default: when
    udev_sees_devices())."""
    udev = udev_sees_devices() if udev is None else udev
    restored = []
    for iface in domain.managed_interfaces:
        if not (iface.mac and iface.guest_actual):
            continue
        link = nl.link(iface.guest_actual)
        if link is None or link.kind != "veth":
            continue  # not a veth end in this namespace: nothing libvirt asked of it here
        if udev and not wait_udev_done(link.index, data_dir):
            log.warning("%s: udev has not handled %s after %.0f s; its MAC is checked now",
                        domain.name, link.name, UDEV_WAIT_S)
        link = nl.link_by_index(link.index)
        if link is None or (link.mac or "").lower() == iface.mac:
            continue
        try:
            nl.set_mac(link.index, iface.mac)
        except NetlinkError as exc:
            raise HostError(f"cannot give the container's device {link.name} its MAC "
                            f"{iface.mac} back (it has {link.mac}): {error_text(exc)}",
                            mac=iface.mac) from None
        log.warning("%s: the container's device %s had MAC %s, not %s (systemd-udevd's "
                    "MACAddressPolicy): set back", domain.name, link.name, link.mac, iface.mac)
        restored.append(link.name)
    return restored
