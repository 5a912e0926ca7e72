"""The lab for bench scripts: one session under the lab lock (down, up with this
worktree's hooks and agent, down at the end, also on failure), and the guest XML
variants the comparisons need: a plain libvirt `type='bridge'` guest (no vzlibvirt
metadata, the baseline), and one filtered by libvirt's own nwfilter."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr as q

from vzlibvirt.lab import guests, images
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.lock import lab_lock
from vzlibvirt.lab.settings import BRIDGE


@contextlib.contextmanager
def lab_session() -> Iterator[Lab]:
    lab = Lab()
    with lab_lock(lab.paths):
        lab.down(quiet=True)  # a lab left by `lab up` or an earlier run has other hooks
        lab.up()
        try:
            yield lab
        finally:
            lab.down(quiet=True)


def plain(g: guests.Guest) -> guests.Guest:
    """G as libvirt alone runs it: no vzlibvirt metadata, a `type='bridge'` on br0."""
    return dataclasses.replace(g, vz_metadata=False, source_bridge=BRIDGE)


def guest_xml(lab: Lab, g: guests.Guest, *, nwfilter: bool = False) -> bytes:
    """G's domain XML; NWFILTER: plus libvirt's clean-traffic filter with G's IPv4."""
    gdir = lab.paths.guests / g.name
    gdir.mkdir(parents=True, exist_ok=True)
    if g.kind == "ct":
        rootfs = gdir / "rootfs"
        if not rootfs.exists():
            images.container_rootfs(rootfs)
        xml = guests.container_xml(g, rootfs)
    else:
        rec = lab.record()
        xml = guests.vm_xml(g, Path(rec.vm_kernel), Path(rec.vm_initrd), lab.console(g))
    if nwfilter:
        params = "".join(f"<parameter name='IP' value={q(ip)}/>" for ip in g.v4)
        # libvirt 9.0's LXC driver instantiates the filter before it names an unnamed
        # veth ("filter binding has no port dev name"): name it
        dev = "vnf" + g.mac.replace(":", "")[-6:]
        mac = f"<mac address={q(g.mac)}/>"
        assert mac in xml.decode()
        xml = xml.decode().replace(mac, f"{mac}<target dev={q(dev)}/><filterref "
                                   f"filter='clean-traffic'>{params}</filterref>", 1).encode()
    return xml


def define(lab: Lab, g: guests.Guest, xml: bytes) -> None:
    lab.undefine(g)
    path = lab.paths.guests / g.name / "domain.xml"
    path.write_bytes(xml)
    lab.virsh(g.driver, "define", str(path))


def timed_start(lab: Lab, g: guests.Guest) -> float:
    t0 = time.monotonic()
    lab.start(g)
    return time.monotonic() - t0
