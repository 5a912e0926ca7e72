"""The lab for bench scripts: one session under the lab lock (down, up with this
worktree's hooks and agent, down at the end, also on failure), and the guest XML
variants the comparisons need: a plain libvirt `type='bridge'` guest (no vzlibvirt
metadata, the baseline), and one filtered by libvirt's own nwfilter."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from xml.sax.saxutils import quoteattr as q

from vzlibvirt.lab import daemon, guests
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
    xml = lab.domain_xml(g)
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
    lab.define(g, xml=xml)


def timed_start(lab: Lab, g: guests.Guest) -> float:
    t0 = time.monotonic()
    lab.start(g)
    return time.monotonic() - t0


def restart_time(lab: Lab, timeout: float = 1800) -> dict[str, float]:
    """libvirtd killed and started again: the kill (SIGTERM until it is gone) and the
    start (until both drivers answer: libvirt re-applies every nwfilter binding and
    runs the guests' `reconnect` hooks before it serves), in seconds."""
    anchor = daemon.read_pid(lab.paths, "virtlogd")
    t0 = time.monotonic()
    daemon.stop_libvirtd(lab.paths)
    t1 = time.monotonic()
    daemon.start_daemons(lab.paths, anchor, timeout=timeout)
    return {"stop": t1 - t0, "start": time.monotonic() - t1}
