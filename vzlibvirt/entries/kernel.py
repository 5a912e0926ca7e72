"""Kernel entries: sysctls, link state and MTU, addresses, routes, proxy neighbours.

Each is one targeted netlink request or one /proc/sys file (entries/base.py says what an
entry promises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from vzlibvirt import netdev, sysctl
from vzlibvirt.entries.base import DeviceEntry, Entry
from vzlibvirt.errors import ConflictError

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink


class _Sysctl(Entry):
    """A kernel setting: turned on and never turned off under other users (rollback of
    the call that changed it puts the old value back)."""

    revertible: ClassVar[bool] = False
    key: str
    value: str

    def applies(self, nl: Netlink) -> bool:
        return True

    def present(self, nl) -> bool:
        return self.applies(nl) and sysctl.read(self.key) == self.value

    def add(self, nl) -> bool:
        return sysctl.ensure(self.key, self.value) is not None

    def remove(self, nl) -> bool:
        return False

    def snapshot(self) -> Any:
        return sysctl.read(self.key)

    def restore(self, nl, snap) -> None:
        if snap is not None and self.applies(nl):
            sysctl.write(self.key, snap)

    def describe(self) -> str:
        return f"sysctl {self.key.replace('/', '.')}={self.value}"


@dataclass(frozen=True)
class HostSysctl(_Sysctl):
    """A host-wide setting (forwarding)."""

    kind: ClassVar[str] = "host-sysctl"
    key: str
    value: str


@dataclass(frozen=True)
class DeviceSysctl(_Sysctl, DeviceEntry):
    """A per-device setting; it lives and dies with the device."""

    kind: ClassVar[str] = "dev-sysctl"
    dev: str
    ifindex: int
    key: str
    value: str

    def applies(self, nl) -> bool:
        return self.same_device(nl)


@dataclass(frozen=True)
class LinkUp(DeviceEntry):
    kind: ClassVar[str] = "link-up"
    revertible: ClassVar[bool] = False
    dev: str
    ifindex: int

    def present(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        return link is not None and link.up

    def add(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        if link is not None and link.up:
            return False
        nl.set_up(self.ifindex)
        return True

    def remove(self, nl) -> bool:
        return False

    def restore(self, nl, snap) -> None:
        if self.same_device(nl):
            nl.set_down(self.ifindex)

    def describe(self) -> str:
        return f"link {self.dev} up"


@dataclass(frozen=True)
class Address(DeviceEntry):
    kind: ClassVar[str] = "address"
    dev: str
    ifindex: int
    address: str
    prefixlen: int

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    def present(self, nl) -> bool:
        return nl.addr_present(self.ifindex, self.address, self.prefixlen)

    def add(self, nl) -> bool:
        return nl.addr_add(self.ifindex, self.address, self.prefixlen, self.family)

    def remove(self, nl) -> bool:
        if not self.same_device(nl):
            return False
        return nl.addr_del(self.ifindex, self.address, self.prefixlen)

    def describe(self) -> str:
        return f"address {self.address}/{self.prefixlen} on {self.dev}"


@dataclass(frozen=True)
class Route(DeviceEntry):
    kind: ClassVar[str] = "route"
    reach: ClassVar[str] = "host"
    dev: str
    ifindex: int
    dst: str
    prefixlen: int

    def present(self, nl) -> bool:
        return nl.route_present(self.dst, self.prefixlen, self.ifindex)

    def add(self, nl) -> bool:
        # Asked before adding: ours carries a metric (contract.ROUTE_METRIC), so the
        # kernel would accept it beside someone else's route of another metric, and lose.
        found = nl.route_match(self.dst, self.prefixlen)
        if found is None:
            return nl.route_add(self.dst, self.prefixlen, self.ifindex)
        if found.oif != self.ifindex:
            other = nl.link_by_index(found.oif) if found.oif else None
            via = other.name if other else f"ifindex {found.oif}"
            raise ConflictError(f"IP {self.dst} is already routed via {via} (not by vzlibvirt)")
        return False

    def remove(self, nl) -> bool:
        return nl.route_del(self.dst, self.prefixlen, self.ifindex)

    def describe(self) -> str:
        return f"route {self.dst}/{self.prefixlen} dev {self.dev}"


@dataclass(frozen=True)
class AnnouncedRoute(Route):
    """A guest route that a routing daemon exports (`neighbour_devs = "none"`, docs/bgp.md):
    the route IS the LAN's announcement, so a migrating guest's hosts hold it back like a
    proxy entry (state.Stage). The same kernel route as a `Route`: one identity, so a
    policy change neither disowns nor duplicates it."""

    kind: ClassVar[str] = "announced-route"
    reach: ClassVar[str] = "lan"

    @property
    def identity(self) -> tuple:
        return (Route.kind, self.dev, self.ifindex, self.dst, self.prefixlen)


@dataclass(frozen=True)
class ProxyNeighbour(DeviceEntry):
    """A permanent proxy ARP / NDP entry: the host answers for `dst` on `dev`."""

    kind: ClassVar[str] = "proxy-neigh"
    reach: ClassVar[str] = "lan"
    dev: str
    ifindex: int
    dst: str

    def present(self, nl) -> bool:
        return nl.pneigh_present(self.dst, self.ifindex)

    def add(self, nl) -> bool:
        return nl.pneigh_add(self.dst, self.ifindex)

    def remove(self, nl) -> bool:
        if not self.same_device(nl):
            return False
        return nl.pneigh_del(self.dst, self.ifindex)

    def describe(self) -> str:
        return f"proxy {'ndp' if ':' in self.dst else 'arp'} {self.dst} on {self.dev}"



@dataclass(frozen=True)
class LinkMtu(DeviceEntry):
    """The device's MTU set to the bridge's; it dies with the device, so never reverted."""

    kind: ClassVar[str] = "link-mtu"
    revertible: ClassVar[bool] = False
    dev: str
    ifindex: int
    mtu: int

    def present(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        return link is not None and link.mtu == self.mtu

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        nl.set_mtu(self.ifindex, self.mtu)
        return True

    def remove(self, nl) -> bool:
        return False

    def snapshot(self) -> Any:
        return netdev.mtu(self.dev)

    def restore(self, nl, snap) -> None:
        if snap and self.same_device(nl):
            nl.set_mtu(self.ifindex, snap)

    def describe(self) -> str:
        return f"mtu {self.mtu} on {self.dev}"
