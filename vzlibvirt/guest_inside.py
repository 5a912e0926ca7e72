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
from collections.abc import Iterable, Iterator

from vzlibvirt.errors import HostError

CLONE_NEWNET = 0x40000000


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


def set_addresses(netns_fd: int, mac: str, add: Iterable[str], remove: Iterable[str]) -> None:
    """Add / remove host-prefix addresses on the container device whose MAC is `mac`."""
    add, remove = list(add), list(remove)
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(netns_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the container failed")
            from vzlibvirt.netlink import IFA_F_NODAD
            from vzlibvirt.netlink_admin import AddrSpec, BridgeNetlink

            with BridgeNetlink() as nl:  # its addr_add_spec sets scope and flags
                link = next((ln for ln in nl.links() if (ln.mac or "").lower() == mac), None)
                if link is None:
                    raise HostError(f"the container has no device with MAC {mac}")
                if add and not link.up:  # a hot-plugged interface arrives down
                    nl.set_up(link.index)
                for ip in add:  # global scope, no DAD: as libvirt sets a native <ip>
                    addr = ipaddress.ip_address(ip)
                    nl.addr_add_spec(link.index, AddrSpec(
                        addr.version, ip, 32 if addr.version == 4 else 128, 0,
                        IFA_F_NODAD if addr.version == 6 else 0, None, None))
                for ip in remove:
                    addr = ipaddress.ip_address(ip)
                    nl.addr_del(link.index, ip, 32 if addr.version == 4 else 128)
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
