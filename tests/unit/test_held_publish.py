"""The safety net for a lost "resumed (migrated)" event: a guest the destination holds
back is published once libvirt reports it running, never while it is paused. Driven
through libvirt's own test driver (test:///default: a real libvirt connection with an
in-memory domain that can be paused and resumed)."""

from __future__ import annotations

import threading

import libvirt

from vzlibvirt.libvirt_events import Handlers, LibvirtEvents

GONE = "qemu-00000000-0000-0000-0000-000000000001"


def test_held_guest_published_once_it_runs_not_while_paused():
    conn = libvirt.open("test:///default")
    try:
        dom = conn.listAllDomains()[0]
        key = f"qemu-{dom.UUIDString()}"
        published: list[tuple[str, bool, bytes]] = []
        handlers = Handlers(apply=None, stopped=None, reconcile=None, withdraw=None,
                            publish=lambda d, xml, only: published.append((d, only, xml)))
        held = {key, GONE, "lxc-" + dom.UUIDString()}
        events = LibvirtEvents((), handlers, threading.Event(), held=held)

        dom.suspend()  # a migration's destination: paused until the switch-over
        events.publish_running(conn, "qemu")
        assert published == []
        assert key in held

        dom.resume()
        events.publish_running(conn, "qemu")
        assert [(d, only) for d, only, _ in published] == [("qemu", True)]
        assert dom.UUIDString().encode() in published[0][2]
        # published: no longer held; a domain libvirt does not know is left to its
        # `stopped` hook; another driver's key is not this connection's
        assert held == {GONE, "lxc-" + dom.UUIDString()}

        events.publish_running(conn, "qemu")
        assert len(published) == 1
    finally:
        conn.close()
