"""The DHCP host entry: dnsmasq hands a routed VM its IPv4 on its own tap (dhcp.py owns
the hosts file; this is one line of it as an entry the state record lists)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vzlibvirt.dhcp import (
    RELEASED,
    dnsmasq_pid,
    host_line,
    read_hosts,
    release_lease,
    reload,
    write_hosts,
)
from vzlibvirt.entries.base import Entry

log = logging.getLogger("vzlibvirt.dhcp")


@dataclass(frozen=True)
class DhcpHost(Entry):
    """dnsmasq hands `ip`/32 to `mac` on `tap`; `dir` is where the hosts file lives (the
    record carries it, so stop needs no config)."""

    kind: ClassVar[str] = "dhcp-host"
    dir: str
    tap: str
    mac: str
    ip: str

    @property
    def line(self) -> str:
        return host_line(self.mac, self.tap, self.ip)

    def present(self, nl) -> bool:
        return self.line in read_hosts(Path(self.dir))

    def add(self, nl) -> bool:
        lines = read_hosts(Path(self.dir))
        if self.line in lines:
            return False
        self._release_previous_holders()
        write_hosts(Path(self.dir), [*lines, self.line])
        reload(Path(self.dir))
        return True

    def remove(self, nl) -> bool:
        lines = read_hosts(Path(self.dir))
        if self.line not in lines:
            return False
        write_hosts(Path(self.dir), [line for line in lines if line != self.line])
        reload(Path(self.dir))
        # dnsmasq leases an address to one client at a time: per IP, the last one counts
        released = [r for r in read_hosts(Path(self.dir), RELEASED)
                    if r.partition(",")[2] != self.ip]
        write_hosts(Path(self.dir), [*released, f"{self.mac},{self.ip}"], RELEASED)
        return True

    def _release_previous_holders(self) -> None:
        released = read_hosts(Path(self.dir), RELEASED)
        mine = [r for r in released if r.partition(",")[2] == self.ip]
        if not mine:
            return
        if dnsmasq_pid(Path(self.dir)) is not None:
            for old in mine:
                mac = old.partition(",")[0]
                if mac != self.mac:
                    try:
                        release_lease(self.tap, mac, self.ip)
                    except OSError as exc:  # the guest then waits for the lease to expire
                        log.warning("releasing %s's lease on %s: %s", mac, self.ip, exc)
        write_hosts(Path(self.dir), [r for r in released if r not in mine], RELEASED)

    def describe(self) -> str:
        return f"dhcp host {self.mac} -> {self.ip}/32 on {self.tap}"

