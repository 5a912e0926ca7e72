"""The typed, immutable model of what a domain asks for.

Parsing (domain_xml.py) produces these objects; planning and wiring only ever see them,
never XML, so the rules of the contract live in one place.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from vzlibvirt.contract import state_key

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Driver(enum.StrEnum):
    QEMU = "qemu"
    LXC = "lxc"


class Mode(enum.StrEnum):
    ROUTED = "routed"
    BRIDGED = "bridged"


class Filter(enum.StrEnum):
    """Port security on a bridged port (issue 4)."""

    NONE = "none"
    MAC = "mac"
    MAC_IP = "mac-ip"


class IPSource(enum.StrEnum):
    """Where a guest IP came from: it decides who configures the inside of the guest."""

    VZ = "vz"  # <vz:ip>: we wire the host side only
    NATIVE = "native"  # LXC <ip> on the interface: libvirt also configures the container


@dataclass(frozen=True)
class GuestIP:
    address: IPAddress
    source: IPSource = IPSource.VZ

    @property
    def version(self) -> int:
        return self.address.version

    @property
    def host_prefix(self) -> int:
        return 32 if self.address.version == 4 else 128

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True)
class Interface:
    """One device <interface> of the domain, joined with its <vz:interface> if any.

    `mode` is None for interfaces we leave alone (`note` then says why, for `plan`).
    `plugged_by_libvirt` marks bridged
    interfaces of type 'bridge' (or 'network' in bridge mode): libvirt plugs them, we
    only check the bridge and apply port security.
    """

    index: int
    mac: str | None
    type: str
    host_dev: str | None = None
    guest_dev: str | None = None
    # LXC's `start` only: the container end of the veth, still in the host namespace
    # under this name (<guest actual=...>) until libvirt moves it into the container
    guest_actual: str | None = None
    mode: Mode | None = None
    bridge: str | None = None
    ips: tuple[GuestIP, ...] = ()
    filter: Filter = Filter.NONE
    isolated: bool = False
    plugged_by_libvirt: bool = False
    source_network: str | None = None
    note: str | None = None

    @property
    def managed(self) -> bool:
        return self.mode is not None

    @property
    def label(self) -> str:
        """How an error names this interface: its MAC, else its position."""
        return self.mac or f"#{self.index}"


@dataclass(frozen=True)
class Domain:
    driver: Driver
    name: str
    uuid: str | None
    interfaces: tuple[Interface, ...] = field(default=())

    @property
    def managed_interfaces(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.managed)

    @property
    def routed_interfaces(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.mode is Mode.ROUTED)

    @property
    def bridged_interfaces(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.mode is Mode.BRIDGED)

    @property
    def key(self) -> str:
        """Stable, file-name-safe identity for the state store (the UUID is validated)."""
        if not self.uuid:
            raise ValueError("a domain without a UUID has no state key")
        return state_key(self.driver, self.uuid)
