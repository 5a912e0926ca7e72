"""Bridge entries: a guest device as a port of a host bridge, and its isolated flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vzlibvirt.entries.base import DeviceEntry
from vzlibvirt.errors import VzError, missing_bridge_error


@dataclass(frozen=True)
class BridgePort(DeviceEntry):
    """`dev` is a port of `bridge` (by name: a re-created bridge is the same bridge)."""

    kind: ClassVar[str] = "bridge-port"
    dev: str
    ifindex: int
    bridge: str

    def _bridge_index(self, nl) -> int | None:
        link = nl.link(self.bridge)
        return link.index if link is not None and link.kind == "bridge" else None

    def present(self, nl) -> bool:
        link = nl.link_by_index(self.ifindex)
        return link is not None and link.master is not None and \
            link.master == self._bridge_index(nl)

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        master = self._bridge_index(nl)
        if master is None:
            raise VzError(missing_bridge_error(self.bridge))
        nl.set_master(self.ifindex, master)
        return True

    def remove(self, nl) -> bool:
        if not self.same_device(nl) or not self.present(nl):
            return False
        nl.set_master(self.ifindex, None)
        return True

    def describe(self) -> str:
        return f"bridge port {self.dev} on {self.bridge}"


@dataclass(frozen=True)
class PortIsolated(DeviceEntry):
    """IFLA_BRPORT_ISOLATED: the port talks to non-isolated ports only (the uplink)."""

    kind: ClassVar[str] = "port-isolated"
    dev: str
    ifindex: int

    def present(self, nl) -> bool:
        return bool(nl.brport_isolated(self.ifindex))

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        if nl.brport_isolated(self.ifindex) is None:
            raise VzError(f"{self.dev} is not a bridge port: cannot isolate it")
        nl.set_brport_isolated(self.ifindex, True)
        return True

    def remove(self, nl) -> bool:
        if not self.same_device(nl) or not self.present(nl):
            return False
        nl.set_brport_isolated(self.ifindex, False)
        return True

    def describe(self) -> str:
        return f"isolated flag on bridge port {self.dev}"
