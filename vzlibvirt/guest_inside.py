"""Addresses inside a running container, as Virtuozzo sets them on venet0.

libvirt configures a container's native `<ip>` only when it starts; an IP that
`vzlibvirt set` adds to a running container must also appear on the container's
interface, or the routed packets arrive at a guest that does not own the address.
`set` hands over the container's network namespace (libvirt's lxcOpenNamespace gives
its file descriptors), and a short-lived thread enters it and uses the netlink layer
there: only that thread changes namespace, the process stays where it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from vzlibvirt.errors import HostError
from vzlibvirt.netlink import Link
from vzlibvirt.netlink_admin import AddrSpec, BridgeNetlink
from vzlibvirt.rtnl import IFA_F_NODAD

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@contextlib.contextmanager
def container_netns(dom) -> Iterator[int]:
    """The network namespace fd of a running LXC domain (libvirt API: never in a hook)."""
    import libvirt_lxc

    fds = libvirt_lxc.lxcOpenNamespace(dom, 0)
    try:
        net = [fd for fd in fds if os.readlink(f"/proc/self/fd/{fd}").startswith("net:")]
        if not net:
            raise HostError("libvirt gave no network namespace for the container")
        yield net[0]
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _on_device(netns_fd: int, mac: str, work: Callable[[BridgeNetlink, Link], T]) -> T:
    """WORK(netlink, device) inside the container on its device whose MAC is `mac`, in a
    short-lived thread that alone enters the namespace."""
    result: list[T] = []
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(netns_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the container failed")
            with BridgeNetlink() as nl:
                link = next((ln for ln in nl.links() if (ln.mac or "").lower() == mac), None)
                if link is None:
                    raise HostError(f"the container has no device with MAC {mac}")
                result.append(work(nl, link))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=inside, name="container-netns")
    thread.start()
    thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, HostError):
            raise exc
        raise HostError(f"inside the container: {exc}") from None
    return result[0]


def _host_prefix(ip: str) -> AddrSpec:
    """IP as a global host-prefix address; IPv6 without DAD, as on Virtuozzo's venet."""
    addr = ipaddress.ip_address(ip)
    return AddrSpec(addr.version, ip, 32 if addr.version == 4 else 128, 0,
                    IFA_F_NODAD if addr.version == 6 else 0, None, None)


def set_addresses(netns_fd: int, mac: str, add: Iterable[str], remove: Iterable[str]) -> None:
    """Add / remove host-prefix addresses on the container device whose MAC is `mac`."""
    add, remove = list(add), list(remove)

    def work(nl: BridgeNetlink, link: Link) -> None:
        if add and not link.up:  # a hot-plugged interface arrives down
            nl.set_up(link.index)
        for ip in add:
            nl.addr_add_spec(link.index, _host_prefix(ip))
        for ip in remove:
            spec = _host_prefix(ip)
            nl.addr_del(link.index, ip, spec.prefixlen)

    _on_device(netns_fd, mac, work)


def end_dad(netns_fd: int, mac: str, ips: Iterable[str]) -> list[str]:
    """Of IPS, the IPv6 addresses on the container device still in duplicate address
    detection, put back without it; returns those. libvirt adds a container's native
    IPv6 addresses with DAD, which keeps them deaf for 1-2 s after `virsh start`; on a
    routed /128 the host has checked the address is free already (claims, LAN probe)."""
    wanted = {ipaddress.ip_address(ip) for ip in ips if ":" in ip}

    def work(nl: BridgeNetlink, link: Link) -> list[str]:
        done = []
        for address, prefixlen in nl.tentative6(link.index):
            if ipaddress.ip_address(address) not in wanted:
                continue
            nl.addr_del(link.index, address, prefixlen)
            nl.addr_add_spec(link.index, AddrSpec(6, address, prefixlen, 0, IFA_F_NODAD,
                                                  None, None))
            done.append(address)
        return done

    return _on_device(netns_fd, mac, work) if wanted else []
