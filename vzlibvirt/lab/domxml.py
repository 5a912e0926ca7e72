"""Domain XML, the one builder for the lab's guests, the tests and bench: as libvirt hands
it to hooks (`hook=True`: with id and uuid), or as `virsh define` takes it, with what makes
a guest bootable (`boot`). The same shapes as the contract's "Domain XML" and the docs."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr as q

from ..contract import XMLNS


@dataclass(frozen=True)
class Boot:
    """What makes a domain bootable: elements after <memory>, and devices around the
    interfaces."""

    memory_mib: int
    head: str
    devices_before: str
    devices_after: str


def lxc_boot(rootfs: Path) -> Boot:
    """A container whose init is the rootfs's static busybox, sleeping forever. It ends
    on SIGTERM: a container's init ignores signals it has no handler for, and libvirt's
    destroy then waits 1.4 s before its SIGKILL (virCgroupKillPainfully)."""
    return Boot(
        64,
        "<vcpu>1</vcpu><os><type>exe</type><init>/bin/busybox</init>"
        "<initarg>sh</initarg><initarg>-c</initarg>"
        "<initarg>trap 'exit 0' TERM; while :; do /bin/busybox sleep 3600; done</initarg>"
        "</os>",
        "<emulator>/usr/lib/libvirt/libvirt_lxc</emulator>"
        f"<filesystem type='mount'><source dir={q(str(rootfs))}/><target dir='/'/>"
        "</filesystem>",
        "<console type='pty'/>",
    )


def kernel_boot(kernel: Path, initrd: Path, cmdline: str, console: Path, *,
                acpi: bool = False) -> Boot:
    """A VM booted directly from kernel + initramfs, its serial console into a file;
    `acpi` for PCI hot-plug."""
    return Boot(
        256,
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type>"
        f"<kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>{cmdline}</cmdline>"
        "</os>" + ("<features><acpi/></features>" if acpi else "")
        + "<on_reboot>destroy</on_reboot>",
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>",
        f"<serial type='file'><source path={q(str(console))}/><target port='0'/></serial>"
        "<memballoon model='none'/>",
    )


def domain_xml(
    name: str,
    *,
    driver: str = "lxc",
    interfaces: list[dict] | None = None,
    uuid: str | None = None,
    hook: bool = True,
    boot: Boot | None = None,
) -> bytes:
    """interfaces: dicts with mac, type (ethernet), target, guest, model, source_bridge,
    vz (None or dict with mode, ips, bridge, filter, isolated, extra: raw XML inside
    <vz:interface>), native (list of (ip, prefix) or (ip, prefix, peer)), routes (list of
    (family, address, prefix, gateway))."""
    dtype = {"lxc": "lxc", "qemu": "qemu", "kvm": "kvm"}[driver]
    vz_parts = []
    dev_parts = []
    for i in interfaces or []:
        vz = i.get("vz")
        if vz is not None:
            attrs = f" mac={q(i['mac'])}"
            for key in ("mode", "bridge", "filter", "isolated"):
                if vz.get(key) is not None:
                    attrs += f" {key}={q(vz[key])}"
            ips = "".join(f"<vz:ip address={q(ip)}/>" for ip in vz.get("ips", []))
            vz_parts.append(f"<vz:interface{attrs}>{ips}{vz.get('extra', '')}</vz:interface>")
        body = f"<mac address={q(i['mac'])}/>"
        if i.get("source_bridge"):
            body += f"<source bridge={q(i['source_bridge'])}/>"
        if i.get("target"):
            body += f"<target dev={q(i['target'])}/>"
        if i.get("guest"):
            body += f"<guest dev={q(i['guest'])}/>"
        if i.get("model"):
            body += f"<model type={q(i['model'])}/>"
        for ip, prefix, *peer in i.get("native", []):
            fam = "ipv6" if ":" in ip else "ipv4"
            body += f"<ip address={q(ip)} family='{fam}' prefix='{prefix}'"
            body += f" peer={q(peer[0])}/>" if peer else "/>"
        for fam, address, prefix, gateway in i.get("routes", []):
            body += (f"<route family='{fam}' address={q(address)} prefix='{prefix}' "
                     f"gateway={q(gateway)}/>")
        dev_parts.append(f"<interface type={q(i.get('type', 'ethernet'))}>{body}"
                         f"</interface>")
    meta = ""
    if vz_parts:
        meta = (f"<metadata><vz:network xmlns:vz=\"{XMLNS}\">{''.join(vz_parts)}"
                f"</vz:network></metadata>")
    ident = ""
    if hook:
        uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{driver}.{name}"))
        ident = f" id='1'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid"
    else:
        ident = f">\n  <name>{name}</name"
    memory = (boot.memory_mib if boot else 64) * 1024
    head, before, after = (boot.head, boot.devices_before, boot.devices_after) if boot \
        else ("", "", "")
    return (f"<domain type='{dtype}'{ident}>\n  {meta}\n"
            f"  <memory unit='KiB'>{memory}</memory>{head}\n"
            f"  <devices>{before}{''.join(dev_parts)}{after}</devices>\n</domain>\n").encode()


def routed(mac: str, ips: list[str], target: str | None = None, guest: str = "venet0",
           native: bool = False) -> dict:
    """A routed interface: with native=True as an LXC container's native <ip> elements."""
    iface = {"mac": mac, "type": "ethernet", "target": target, "guest": guest}
    if native:
        iface["native"] = [(ip, 128 if ":" in ip else 32) for ip in ips]
    else:
        iface["vz"] = {"mode": "routed", "ips": ips}
    return iface


def bridged(mac: str, target: str | None = None, guest: str | None = "netif1",
            ips: list[str] | None = None, filter: str | None = None,
            isolated: str | None = None, bridge: str | None = None,
            type: str = "ethernet", source_bridge: str | None = None,
            mode: str | None = "bridged") -> dict:
    """A bridged interface: type='ethernet' (we plug it) or type='bridge' (libvirt does)."""
    vz = {"mode": mode, "ips": ips or [], "filter": filter, "isolated": isolated,
          "bridge": bridge}
    iface = {"mac": mac, "type": type, "target": target, "guest": guest, "vz": vz}
    if source_bridge:
        iface["source_bridge"] = source_bridge
    return iface
