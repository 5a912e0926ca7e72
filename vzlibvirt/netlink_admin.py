"""Netlink for `bridge create/delete`: creating and deleting the bridge, and moving an
uplink's addresses and routes onto it and back. Dumps are fine here: it runs once per
bridge, never on a guest's hook path.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from vzlibvirt.netlink import AF, Link, Netlink, try_create, try_remove
from vzlibvirt.rtnl import IFA_F_NODAD, RT_SCOPE_LINK

IFA_F_PERMANENT = 0x80
IFA_F_TENTATIVE = 0x40  # duplicate address detection still running
IFA_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400  # nodad, homeaddress, mngtmpaddr, ...
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_RA = 9
RTNH_F_ONLINK = 4

__all__ = ["IFA_F_NODAD", "AddrSpec", "BridgeNetlink", "RouteSpec"]


@dataclass(frozen=True)
class AddrSpec:
    """An address as `bridge create` moves it, with what is needed to put it back."""

    family: int
    address: str
    prefixlen: int
    scope: int
    flags: int
    broadcast: str | None
    label: str | None


@dataclass(frozen=True)
class RouteSpec:
    """A configured route through one device, without the device."""

    family: int
    dst: str | None
    dst_len: int
    gateway: str | None
    table: int
    protocol: int
    scope: int
    type: int
    priority: int | None
    prefsrc: str | None
    flags: int

    def kwargs(self) -> dict:
        kw = {"family": AF[self.family], "dst_len": self.dst_len, "table": self.table,
              "proto": self.protocol, "scope": self.scope, "type": self.type,
              "flags": self.flags}
        for key, value in (("dst", self.dst), ("gateway", self.gateway),
                           ("priority", self.priority), ("prefsrc", self.prefsrc)):
            if value is not None:
                kw[key] = value
        return kw

    def describe(self) -> str:
        dst = f"{self.dst}/{self.dst_len}" if self.dst else "default"
        return dst + (f" via {self.gateway}" if self.gateway else "") + (
            f" table {self.table}" if self.table != 254 else "")


class BridgeNetlink(Netlink):
    """Netlink plus what only the bridge administration needs."""

    def bridge_add(self, name: str, mac: str | None, mtu: int | None) -> int:
        """Create a bridge (STP off: ports forward at once) and return its ifindex.

        MTU and MAC are set after creation, through the paths that mark them as chosen
        by the user, so the kernel keeps them when ports join or leave.
        """
        self.ipr.link("add", ifname=name, kind="bridge", br_stp_state=0)
        index = self.link(name).index
        if mac:
            self.ipr.link("set", index=index, address=mac)
        if mtu:
            self.ipr.link("set", index=index, mtu=mtu)
        return index

    def link_del(self, index: int) -> bool:
        return try_remove(lambda: self.ipr.link("del", index=index))

    def ports(self, master: int) -> list[Link]:
        """The ports of a bridge (a dump: bridge admin and status only)."""
        return [link for link in self.links() if link.master == master]

    def addr_specs(self, index: int) -> list[AddrSpec]:
        """Addresses worth moving: IPv4 ones and permanent, non-link-local IPv6 ones
        (the kernel makes link-local and autoconf addresses per device by itself)."""
        out = []
        for m in self.ipr.get_addr(index=index):
            family = 6 if m["family"] == socket.AF_INET6 else 4
            flags = m.get_attr("IFA_FLAGS") or m["flags"]
            if family == 6 and (m["scope"] == RT_SCOPE_LINK or not flags & IFA_F_PERMANENT):
                continue
            out.append(AddrSpec(
                family=family, address=m.get_attr("IFA_ADDRESS"), prefixlen=m["prefixlen"],
                scope=m["scope"], flags=flags & IFA_SETTABLE,
                broadcast=m.get_attr("IFA_BROADCAST"), label=m.get_attr("IFA_LABEL"),
            ))
        return out

    def tentative6(self, index: int) -> list[tuple[str, int]]:
        """(address, prefixlen) of the device's IPv6 addresses still in duplicate
        address detection: they receive nothing until it ends."""
        return [(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self.ipr.get_addr(index=index, family=socket.AF_INET6)
                if (m.get_attr("IFA_FLAGS") or m["flags"]) & IFA_F_TENTATIVE]

    def addr_add_spec(self, index: int, spec: AddrSpec, extra_flags: int = 0,
                      label: str | None = None) -> bool:
        kw = {"scope": spec.scope, "flags": spec.flags | extra_flags}
        if spec.broadcast:
            kw["broadcast"] = spec.broadcast
        if label and spec.family == 4:
            kw["label"] = label
        return try_create(lambda: self.ipr.addr("add", index=index, address=spec.address,
                                              prefixlen=spec.prefixlen, **kw))

    def route_specs(self, index: int) -> list[RouteSpec]:
        """Routes through `index` that someone configured (not the kernel's own
        connected, local and RA routes), in every table but `local`."""
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in self.ipr.route("dump", family=family):
                table = m.get_attr("RTA_TABLE") or m["table"]
                if m.get_attr("RTA_MULTIPATH") is not None:
                    if any(nh["oif"] == index for nh in m.get_attr("RTA_MULTIPATH")):
                        raise ValueError(f"a multipath route to {m.get_attr('RTA_DST')} "
                                         f"uses this device (not supported)")
                    continue
                if (m.get_attr("RTA_OIF") != index or table == RT_TABLE_LOCAL
                        or m["proto"] in (RTPROT_KERNEL, RTPROT_RA)):
                    continue
                out.append(RouteSpec(
                    family=6 if family == socket.AF_INET6 else 4,
                    dst=m.get_attr("RTA_DST"), dst_len=m["dst_len"],
                    gateway=m.get_attr("RTA_GATEWAY"), table=table, protocol=m["proto"],
                    scope=m["scope"], type=m["type"], priority=m.get_attr("RTA_PRIORITY"),
                    prefsrc=m.get_attr("RTA_PREFSRC"), flags=m["flags"] & RTNH_F_ONLINK,
                ))
        return out

    def route_add_spec(self, index: int, spec: RouteSpec) -> bool:
        return try_create(lambda: self.ipr.route("add", oif=index, **spec.kwargs()))

    def route_del_spec(self, index: int, spec: RouteSpec) -> bool:
        return try_remove(lambda: self.ipr.route("del", oif=index, **spec.kwargs()))
