"""nftables entries: one element of one of our constant tables' sets per guest device.

The tables themselves (rulesets, layout) are library facts in portsec.py (bridged port
security) and rpfilter6.py (the IPv6 reverse-path filter of routed guests); an entry
here is what one guest adds to them and removes again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, ClassVar

from vzlibvirt import portsec, rpfilter6
from vzlibvirt.entries.base import Entry
from vzlibvirt.model import Filter
from vzlibvirt.nftlib import SetTable, ifindex_key


class SetElement(Entry):
    """A host entry that is one element of one of our sets; keyed by ifindex, so it stays
    valid (and removable) after the device went away and its name was reused."""

    table: ClassVar[SetTable]
    set_name: ClassVar[str]
    dev: str
    ifindex: int

    def key(self) -> bytes:
        """The element's key in the kernel's layout (for the one-request lookup)."""
        raise NotImplementedError

    def elem(self) -> Any:
        """The element in nft JSON."""
        raise NotImplementedError

    def present(self, nl) -> bool:
        return self.table.present(self.set_name, self.key())

    def add(self, nl) -> bool:
        if self.present(nl):
            return False
        self.table.write("add", self.set_name, self.elem())
        return True

    def remove(self, nl) -> bool:
        if not self.present(nl):
            return False
        self.table.write("delete", self.set_name, self.elem())
        return True


@dataclass(frozen=True)
class RoutedPort6(SetElement):
    """The routed guest device is in `routed_ports`: its IPv6 sources are checked."""

    kind: ClassVar[str] = "rpfilter6-port"
    table: ClassVar[SetTable] = rpfilter6.TABLE
    set_name: ClassVar[str] = "routed_ports"
    dev: str
    ifindex: int

    def key(self) -> bytes:
        return ifindex_key(self.ifindex)

    def elem(self) -> Any:
        return self.ifindex

    def describe(self) -> str:
        return f"IPv6 reverse-path filter on {self.dev}"


class _PortElement(SetElement):
    """An element of one of the bridged port-security sets."""

    table: ClassVar[SetTable] = portsec.TABLE


@dataclass(frozen=True)
class PortFilter(_PortElement):
    """The port's entry in `ports`: which check its frames go through."""

    kind: ClassVar[str] = "port-filter"
    set_name: ClassVar[str] = "ports"
    dev: str
    ifindex: int
    filter: str

    def key(self) -> bytes:
        return ifindex_key(self.ifindex)

    def elem(self) -> Any:
        return [self.ifindex, {"jump": {"target": portsec.CHAIN_FOR[Filter(self.filter)]}}]

    def describe(self) -> str:
        return f"port security filter={self.filter} on {self.dev} (ifindex {self.ifindex})"


class _PortPair(_PortElement):
    """An `ifindex . value` element: a value the port may send from."""

    def value(self) -> str:
        raise NotImplementedError

    def packed(self) -> bytes:
        """The value in the kernel's layout of the set's key."""
        raise NotImplementedError

    def key(self) -> bytes:
        return ifindex_key(self.ifindex) + self.packed()

    def elem(self) -> Any:
        return {"concat": [self.ifindex, self.value()]}


@dataclass(frozen=True)
class PortMac(_PortPair):
    kind: ClassVar[str] = "port-mac"
    set_name: ClassVar[str] = "port_mac"
    dev: str
    ifindex: int
    mac: str

    def value(self) -> str:
        return self.mac

    def packed(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", "")) + b"\0\0"

    def describe(self) -> str:
        return f"allowed MAC {self.mac} on {self.dev}"


@dataclass(frozen=True)
class PortIP(_PortPair):
    kind: ClassVar[str] = "port-ip"
    dev: str
    ifindex: int
    address: str

    @property
    def set_name(self) -> str:  # type: ignore[override]
        return "port_ip6" if ":" in self.address else "port_ip4"

    def value(self) -> str:
        return self.address

    def packed(self) -> bytes:
        return ipaddress.ip_address(self.address).packed

    def describe(self) -> str:
        return f"allowed IP {self.address} on {self.dev}"
