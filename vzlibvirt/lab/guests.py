"""The lab's guests: the seed's containers and VMs, and the domain XML that defines them
(built by lab.domxml, contract section "Domain XML")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from vzlibvirt.contract import GATEWAY4, GATEWAY6

from .domxml import domain_xml, kernel_boot, lxc_boot
from .settings import BRIDGE, LAN_GATEWAY4, LAN_PREFIX4


@dataclass(frozen=True)
class Guest:
    """One lab guest with one interface: routed, or (mode="bridged") on the LAN via br0."""

    name: str
    kind: str  # "ct" (LXC container) | "vm" (QEMU under TCG, or KVM)
    mac: str
    ips: tuple[str, ...]
    extra_vz: str = ""  # raw extra XML inside <vz:interface> (refusal tests)
    vz_metadata: bool = True  # LXC: False = native <ip> only, no <vz:network>
    mode: str = "routed"
    vz_attrs: dict[str, str] = field(default_factory=dict)  # e.g. filter, bridge
    dhcp: bool = False  # VM: configure eth0 with udhcpc only (vz.dhcp=1), no vzip
    source_bridge: str = ""  # <interface type='bridge'> (libvirt plugs it), not ethernet
    hotplug_ips: tuple[str, ...] = ()  # VM: IPs its init sets on a hot-plugged eth1 (ACPI on)

    @property
    def driver(self) -> str:
        return "lxc" if self.kind == "ct" else "qemu"

    @property
    def v4(self) -> list[str]:
        return [ip for ip in self.ips if ipaddress.ip_address(ip).version == 4]

    @property
    def v6(self) -> list[str]:
        return [ip for ip in self.ips if ipaddress.ip_address(ip).version == 6]


SEED_CONTAINERS = tuple(
    Guest(f"ct{i}", "ct", f"52:54:00:aa:00:{i:02x}", (f"198.51.100.{100 + i}",))
    for i in (1, 2, 3)
)
SEED_VMS = tuple(
    Guest(f"vm{i}", "vm", f"52:54:00:bb:00:{i:02x}", (f"198.51.100.{200 + i}",))
    for i in (1, 2)
)
# Seed 5.2.1.2: containers whose netif1 is a port of br0 (plugged by vzlibvirt), their
# /24 and gateway set inside by libvirt from native <ip>/<route>.
SEED_BRIDGED_CONTAINERS = tuple(
    Guest(f"bct{i}", "ct", f"52:54:00:dd:00:{0x10 + i:02x}", (f"198.51.100.{110 + i}",),
          mode="bridged")
    for i in (1, 2)
)
# Seed 5.2.2.1: a VM whose eth0 libvirt itself plugs into br0; its /24 on the cmdline.
SEED_BRIDGED_VMS = (
    Guest("bvm1", "vm", "52:54:00:dd:00:21", ("198.51.100.121",), mode="bridged",
          source_bridge=BRIDGE),
)


def _interface(g: Guest) -> dict:
    """G's one interface. A routed container's native <ip>/<route> configure the inside
    (libvirt does it), our metadata (or the LXC default) makes the host side routed; a
    bridged one gets netif1 with a LAN address and gateway, our metadata makes it a port
    of br0. A VM's IPs are in <vz:ip> (QEMU refuses native ones)."""
    vz = {"mode": g.mode, "ips": list(g.ips) if g.kind == "vm" else [], "extra": g.extra_vz,
          **g.vz_attrs}
    iface: dict = {"mac": g.mac, "vz": vz if g.vz_metadata else None}
    if g.kind == "vm":
        iface.update(model="virtio", type="bridge" if g.source_bridge else "ethernet",
                     source_bridge=g.source_bridge)
    elif g.mode == "bridged":
        iface.update(guest="netif1", native=[(ip, LAN_PREFIX4) for ip in g.v4],
                     routes=[("ipv4", "0.0.0.0", 0, LAN_GATEWAY4)])
        if g.source_bridge:  # libvirt plugs it (bench: plain libvirt, nwfilter)
            iface.update(type="bridge", source_bridge=g.source_bridge)
    else:
        iface.update(guest="venet0",
                     native=[(ip, 32, GATEWAY4) for ip in g.v4] + [(ip, 128) for ip in g.v6],
                     routes=([("ipv4", "0.0.0.0", 0, GATEWAY4)] if g.v4 else [])
                     + ([("ipv6", "::", 0, GATEWAY6)] if g.v6 else []))
    return iface


def container_xml(g: Guest, rootfs: Path) -> bytes:
    return domain_xml(g.name, driver="lxc", interfaces=[_interface(g)], hook=False,
                      boot=lxc_boot(rootfs))


def vm_xml(g: Guest, kernel: Path, initrd: Path, console: Path, *, kvm: bool = False) -> bytes:
    """A QEMU guest; its IPs reach the initramfs init on the kernel command line: /32
    via 169.254.0.1 when routed, a LAN /24 via the lab host when bridged."""
    if g.dhcp:
        net = "vz.dhcp=1"
    elif g.mode == "bridged":
        net = f"vzip={','.join(f'{ip}/{LAN_PREFIX4}' for ip in g.v4)} vzgw={LAN_GATEWAY4}"
    else:
        net = f"vzip={','.join(g.ips)} vzgw={GATEWAY4}"
    if g.hotplug_ips:
        net += f" vzip1={','.join(g.hotplug_ips)}"
    # PCI hot-plug needs ACPI (without it QEMU's pci.0 refuses device_add)
    boot = kernel_boot(kernel, initrd, f"console=ttyS0 quiet panic=-1 {net}", console,
                       acpi=bool(g.hotplug_ips))
    return domain_xml(g.name, driver="kvm" if kvm else "qemu", interfaces=[_interface(g)],
                      hook=False, boot=boot)
# The two-host lab's live-migrated guests: routed VMs with IPv4 and IPv6, and a bridged
# one on br0 (QEMU announces its own MAC after a migration) for comparison.
MIGRATING_VMS = tuple(
    Guest(f"mvm{i}", "vm", f"52:54:00:ee:00:{i:02x}",
          (f"198.51.100.{239 + i}", f"2001:db8:100::{239 + i:x}"))
    for i in (1, 2)
)
MIGRATING_BRIDGED_VM = Guest("mbvm1", "vm", "52:54:00:ee:00:21", ("198.51.100.250",),
                             mode="bridged", source_bridge=BRIDGE)
MOVING_CONTAINER = Guest("mct1", "ct", "52:54:00:ee:00:31",
                         ("198.51.100.245", "2001:db8:100::245"))
# The BGP fabric's guests (`--hosts 2 --bgp`): addresses in their own subnets, reachable
# from Computer Y only through the router's BGP-learned routes. The last one is outside
# the hosts' --export prefixes (203.0.113.0/26, 2001:db8:200::/64): never announced.
FABRIC_CONTAINER = Guest("fct1", "ct", "52:54:00:ee:00:41", ("203.0.113.11", "2001:db8:200::11"))
FABRIC_VM = Guest("fvm1", "vm", "52:54:00:ee:00:42", ("203.0.113.21", "2001:db8:200::21"))
FABRIC_UNEXPORTED = Guest("fct2", "ct", "52:54:00:ee:00:43", ("203.0.113.100",))
