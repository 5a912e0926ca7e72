"""The lab for bench scripts: one session under the lab lock (down, up with this
worktree's hooks and agent, down at the end, also on failure), and the guest XML
variants the comparisons need: a plain libvirt `type='bridge'` guest (no vzlibvirt
metadata, the baseline), and one filtered by libvirt's own nwfilter."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

from vzlibvirt.lab import guests
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.lock import lab_lock
from vzlibvirt.lab.settings import BRIDGE

METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)
CT_ETHERNET = "<interface type='ethernet'>"
CT_BRIDGE = f"<interface type='bridge'><source bridge={quoteattr(BRIDGE)}/>"


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


def guest_xml(lab: Lab, g: guests.Guest, *, plain: bool = False, nwfilter: bool = False,
              vz_filter: str | None = None) -> str:
    """G's domain XML; PLAIN: without our metadata and, for a container, as a libvirt
    `type='bridge'` interface on br0 (a bridged VM already is one); NWFILTER: plain, plus
    libvirt's clean-traffic filter with the guest's IP; VZ_FILTER: our port security."""
    gdir = lab.paths.guests / g.name
    gdir.mkdir(parents=True, exist_ok=True)
    if g.kind == "ct":
        rootfs = gdir / "rootfs"
        if not rootfs.exists():
            from vzlibvirt.lab import images

            images.container_rootfs(rootfs)
        xml = guests.container_xml(g, rootfs)
    else:
        rec = lab.record()
        xml = guests.vm_xml(g, Path(rec.vm_kernel), Path(rec.vm_initrd), lab.console(g))
    if plain or nwfilter:
        xml = METADATA.sub("", xml, count=1).replace(CT_ETHERNET, CT_BRIDGE, 1)
    if nwfilter:
        params = "".join(f"<parameter name='IP' value={quoteattr(ip)}/>" for ip in g.v4)
        # libvirt 9.0's LXC driver instantiates the filter before it names an unnamed
        # veth ("filter binding has no port dev name"): name it
        dev = "vnf" + g.mac.replace(":", "")[-6:]
        xml = xml.replace(f"<mac address={quoteattr(g.mac)}/>",
                          f"<mac address={quoteattr(g.mac)}/><target dev={quoteattr(dev)}/>"
                          f"<filterref filter='clean-traffic'>{params}</filterref>", 1)
    if vz_filter:
        mode = f" mode={quoteattr('bridged')}"
        xml = xml.replace(f"{mode}>", f"{mode} filter={quoteattr(vz_filter)}>", 1)
        assert f"filter={quoteattr(vz_filter)}" in xml, "no bridged vz:interface to filter"
    return xml


def define(lab: Lab, g: guests.Guest, xml: str) -> None:
    lab.undefine(g)
    path = lab.paths.guests / g.name / "domain.xml"
    path.write_text(xml)
    lab.virsh(g.driver, "define", str(path))


def timed_start(lab: Lab, g: guests.Guest) -> float:
    t0 = time.monotonic()
    lab.start(g)
    return time.monotonic() - t0
