"""The plugin base for one interface mode, in the spirit of os-vif's plug/unplug.

A mode first resolves the environment (which host devices, which neighbour devices;
netlink reads only), then lists the entries the host must hold (pure), and may act
after the entries are in place (announcements). The engine owns ordering, the state
record, rollback and removal, so a mode never has to get those right twice. The modes
(routed.py, bridged.py) subclass InterfaceWiring; modes.py is the table of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vzlibvirt.errors import VzError
from vzlibvirt.model import Interface, Mode

if TYPE_CHECKING:
    from vzlibvirt.config import Config
    from vzlibvirt.entries import Entry
    from vzlibvirt.model import Domain
    from vzlibvirt.netlink import Link, Netlink
    from vzlibvirt.state import InterfaceRecord, Stage, StateStore


@dataclass
class WireContext:
    domain: Domain
    config: Config
    nl: Netlink
    store: StateStore
    stage: Stage  # incoming: a migration's destination, the guest still runs elsewhere
    probe: bool = True  # False: a migration's destination (the source answers the probe)


class InterfaceWiring:
    mode: Mode

    def resolve(self, ctx: WireContext, iface: Interface,
                previous: InterfaceRecord | None) -> InterfaceRecord:
        """Check the host can take this interface; the record without entries."""
        raise NotImplementedError

    def entries(self, ctx: WireContext, iface: Interface, record: InterfaceRecord) -> list[Entry]:
        """The entries the host must hold for this interface, in the order to add them."""
        raise NotImplementedError

    def after_wire(self, ctx: WireContext, iface: Interface, record: InterfaceRecord) -> None:
        """Work after every entry is in place (e.g. announcements); failures only warn."""

    @staticmethod
    def host_link(ctx: WireContext, iface: Interface) -> Link:
        """The guest's host-side device, which libvirt names in <target dev>."""
        if not iface.host_dev:
            raise VzError("libvirt named no host device (<target dev>) for this interface")
        link = ctx.nl.link(iface.host_dev)
        if link is None:
            raise VzError(f"host device {iface.host_dev} does not exist")
        return link
