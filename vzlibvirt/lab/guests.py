"""The lab's guests and their domain XML (contract section "Domain XML")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from vzlibvirt.contract import GATEWAY4, GATEWAY6, XMLNS

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
    labels: dict[str, str] = field(default_factory=dict)
    dhcp: bool = False  # VM: configure eth0 with udhcpc only (vz.dhcp=1), no vzip
    source_bridge: str = ""  # VM: <interface type='bridge'> (libvirt plugs it), not ethernet

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


def _q(value: str) -> str:
    return quoteattr(value)


def vz_metadata(g: Guest, *, with_ips: bool) -> str:
    ips = "".join(f"<vz:ip address={_q(ip)}/>" for ip in g.ips) if with_ips else ""
    return (
        f"<metadata><vz:network xmlns:vz={_q(XMLNS)}>"
        f"<vz:interface mac={_q(g.mac)} mode={_q(g.mode)}>{ips}{g.extra_vz}</vz:interface>"
        "</vz:network></metadata>"
    )


def container_xml(g: Guest, rootfs: Path) -> str:
    """A routed LXC guest: native <ip>/<route> configure the inside (libvirt does it),
    our metadata (or the LXC default) makes the host side routed. A bridged one gets
    netif1 with a LAN address and gateway; our metadata makes it a port of br0."""
    if g.mode == "bridged":
        return _container_xml(g, rootfs, "netif1", "".join(
            f"<ip address={_q(ip)} prefix='{LAN_PREFIX4}'/>" for ip in g.v4)
            + f"<route family='ipv4' address='0.0.0.0' prefix='0' "
              f"gateway={_q(LAN_GATEWAY4)}/>")
    native = "".join(
        f"<ip address={_q(ip)} prefix='32' peer={_q(GATEWAY4)}/>" for ip in g.v4
    ) + "".join(f"<ip address={_q(ip)} prefix='128'/>" for ip in g.v6)
    if g.v4:
        native += (f"<route family='ipv4' address='0.0.0.0' prefix='0' "
                   f"gateway={_q(GATEWAY4)}/>")
    if g.v6:
        native += f"<route family='ipv6' address='::' prefix='0' gateway={_q(GATEWAY6)}/>"
    return _container_xml(g, rootfs, "venet0", native)


def _container_xml(g: Guest, rootfs: Path, guest_dev: str, native: str) -> str:
    meta = vz_metadata(g, with_ips=False) if g.vz_metadata else ""
    return f"""<domain type='lxc'>
  <name>{g.name}</name>
  {meta}
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type>exe</type>
    <init>/bin/busybox</init>
    <initarg>sh</initarg><initarg>-c</initarg>
    <initarg>while :; do /bin/busybox sleep 3600; done</initarg>
  </os>
  <devices>
    <emulator>/usr/lib/libvirt/libvirt_lxc</emulator>
    <filesystem type='mount'><source dir={_q(str(rootfs))}/><target dir='/'/></filesystem>
    <interface type='ethernet'>
      <mac address={_q(g.mac)}/>
      <guest dev={_q(guest_dev)}/>
      {native}
    </interface>
    <console type='pty'/>
  </devices>
</domain>
"""


def vm_xml(g: Guest, kernel: Path, initrd: Path, console: Path, *, kvm: bool = False) -> str:
    """A QEMU guest; its IPs reach the initramfs init on the kernel command line: /32
    via 169.254.0.1 when routed, a LAN /24 via the lab host when bridged."""
    if g.dhcp:
        net = "vz.dhcp=1"
    elif g.mode == "bridged":
        net = f"vzip={','.join(f'{ip}/{LAN_PREFIX4}' for ip in g.v4)} vzgw={LAN_GATEWAY4}"
    else:
        net = f"vzip={','.join(g.ips)} vzgw={GATEWAY4}"
    if g.source_bridge:
        nic = f"<interface type='bridge'><source bridge={_q(g.source_bridge)}/>"
    else:
        nic = "<interface type='ethernet'>"
    cmdline = f"console=ttyS0 quiet panic=-1 {net}"
    return f"""<domain type={_q('kvm' if kvm else 'qemu')}>
  <name>{g.name}</name>
  {vz_metadata(g, with_ips=True)}
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {nic}
      <mac address={_q(g.mac)}/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path={_q(str(console))}/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""
