"""The entry contract: one object per thing vzlibvirt puts on the host.

Wiring a guest means making a list of entries present; unwiring means removing the ones
we created. Every entry can say whether it is present, add itself (reporting whether it
created something or found it there already) and remove itself, and it serialises to
the state file, so the state records exactly what was added and nothing more.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink


class Entry:
    """Base: subclasses are frozen dataclasses with a `kind` tag."""

    kind: ClassVar[str]
    #: removed on unwire when we created it; False for settings we leave on purpose
    revertible: ClassVar[bool] = True
    #: how far the entry reaches: "device" (the guest's device, host settings), "host"
    #: (this host routes to the guest), "lan" (the LAN is told the guest is here). A
    #: migrating guest holds back the wider ones on the host it is not running on
    #: (state.Stage).
    reach: ClassVar[str] = "device"

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
