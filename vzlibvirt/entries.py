"""Host entries: one object per thing vzlibvirt puts on the host.

Wiring a guest means making a list of entries present; unwiring means removing the ones
we created. Every entry can say whether it is present, add itself (reporting whether it
created something or found it there already) and remove itself, and it serialises to
the state file, so the state records exactly what was added and nothing more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from vzlibvirt import sysctl
from vzlibvirt.errors import ConflictError

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink


class Entry:
    """Base: subclasses are frozen dataclasses with a `kind` tag."""

    kind: ClassVar[str]
    #: removed on unwire when we created it; False for settings we leave on purpose
    revertible: ClassVar[bool] = True

    def present(self, nl: Netlink) -> bool:
        raise NotImplementedError

    def add(self, nl: Netlink) -> bool:
        """Make the entry present; True when this call created it."""
        raise NotImplementedError

    def remove(self, nl: Netlink) -> bool:
        """Remove the entry; False when it was not there (already gone is fine)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def snapshot(self) -> Any:
        """What rollback needs to put back what add() changed (settings only)."""
        return None

    def restore(self, nl: Netlink, snap: Any) -> None:
        """Undo an add() of this call: by default, remove what it created."""
        self.remove(nl)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @property
    def identity(self) -> tuple:
        return (self.kind, *(getattr(self, f.name) for f in fields(self)))


class DeviceEntry(Entry):
    """An entry on one device; it is only touched while `dev` still has `ifindex`.

    Device names are reused (vnet0 of a stopped guest may be the next guest's vnet0),
    so removal checks the ifindex: entries of a device that is gone went with it.
    """

    dev: str
    ifindex: int

    def same_device(self, nl: Netlink) -> bool:
        link = nl.link(self.dev)
        return link is not None and link.index == self.ifindex


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
    dev: str
    ifindex: int
    dst: str
    prefixlen: int

    def present(self, nl) -> bool:
        return nl.route_present(self.dst, self.prefixlen, self.ifindex)

    def add(self, nl) -> bool:
        if nl.route_add(self.dst, self.prefixlen, self.ifindex):
            return True
        found = nl.route_match(self.dst, self.prefixlen)
        if found is not None and found.oif != self.ifindex:
            other = nl.link_by_index(found.oif) if found.oif else None
            via = other.name if other else f"ifindex {found.oif}"
            raise ConflictError(f"IP {self.dst} is already routed via {via} (not by vzlibvirt)")
        return False

    def remove(self, nl) -> bool:
        return nl.route_del(self.dst, self.prefixlen, self.ifindex)

    def describe(self) -> str:
        return f"route {self.dst}/{self.prefixlen} dev {self.dev}"


@dataclass(frozen=True)
class ProxyNeighbour(DeviceEntry):
    """A permanent proxy ARP / NDP entry: the host answers for `dst` on `dev`."""

    kind: ClassVar[str] = "proxy-neigh"
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


ENTRY_TYPES: dict[str, type[Entry]] = {}


def register(cls: type[Entry]) -> type[Entry]:
    """Make an entry type loadable from state files (other modes register theirs)."""
    ENTRY_TYPES[cls.kind] = cls
    return cls


for _cls in (HostSysctl, DeviceSysctl, LinkUp, Address, Route, ProxyNeighbour):
    register(_cls)


def entry_from_json(data: dict[str, Any]) -> Entry:
    data = dict(data)
    kind = data.pop("kind", "")
    if kind not in ENTRY_TYPES:  # kinds of the modes register when their module loads
        from vzlibvirt.wiring import load_plugins

        load_plugins()
    cls = ENTRY_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown entry kind {kind!r} in state: {data!r}")
    return cls(**data)
