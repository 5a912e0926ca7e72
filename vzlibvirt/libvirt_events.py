"""The agent as a libvirt client: domain events between the hooks.

libvirt runs no hook for `virsh attach-interface --live`, for `virsh metadata --live`,
or when a guest dies while its hook could not run. This module follows libvirt's domain
events on each URI of `[agent] connect` and hands the agent what changed:

- DEVICE_ADDED / DEVICE_REMOVED / METADATA_CHANGE (our namespace): the domain's live XML,
  which the agent applies through the engine (the record diff wires and unwires exactly
  the difference);
- LIFECYCLE stopped: the domain's state key, which the agent unwires when the domain's
  host devices are gone (a safety net for a `stopped` hook that failed or never ran);
- LIFECYCLE started of a container: the domain and its live XML, so the agent ends the
  duplicate address detection of its routed IPv6 addresses (guest_inside.end_dad);
- LIFECYCLE of a live migration (migration.action): resumed after the migration, the
  domain's live XML to publish; suspended or stopped for it, the key to withdraw;
- a (re)connection: the live XML of every running domain, to reconcile;
- every HELD_CHECK_S while a migration's destination holds a guest back (`held`, keys
  the agent's `started` wired at stage incoming): the guest's state, published once it
  runs, should libvirt's resumed event have been lost.

The LXC driver sends no device events at all, so the agent's netlink watcher fills in:
a new veth that no record names after a moment is looked up among the running
containers (`owner_of`: the one whose live XML names it is applied), and a recorded
device that vanished while its domain has others left re-applies that domain
(`changed`).

libvirt-python's default event loop runs in a thread of its own; callbacks only queue
work, and one worker thread makes the libvirt calls (XMLDesc) *before* the handler takes
the agent's work lock, never while a hook call holds it: a hook waits for the agent, and
libvirt may wait for the hook. A connection that closes (libvirtd restarted) is opened
again with exponential backoff (tenacity), then reconciled.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from vzlibvirt import migration
from vzlibvirt.config import driver_of
from vzlibvirt.contract import XMLNS

log = logging.getLogger("vzlibvirt.events")
KEEPALIVE_S, KEEPALIVE_COUNT = 2, 3  # a dead libvirtd is noticed within ~6 s at worst
# the shims leave `reconnect` to the agent: it reconciles within a second of libvirtd
# serving again; a refused connect costs well under a millisecond
BACKOFF_MAX_S = 1.0
HELD_CHECK_S = 1.0


@dataclass(frozen=True)
class Handlers:
    """What the agent does with an event; each takes the work lock itself."""

    apply: Callable[[str, bytes], None]  # driver, live XML
    stopped: Callable[[str], None]  # state key
    reconcile: Callable[[str, list[bytes]], None]  # driver, live XML of running domains
    publish: Callable[[str, bytes, bool], None]  # driver, live XML, only if held back
    withdraw: Callable[[str], None]  # state key
    booted: Callable[[object, bytes], None] | None = None  # a started container, live XML
    # connected to a URI of this driver: from now on every reconnection reconciles it
    following: Callable[[str], None] | None = None


OWNER_RETRY_S = 1.0  # libvirt may record a hot-plugged device in the XML after it exists


@dataclass(frozen=True)
class Job:
    uri: str
    kind: str  # apply | stopped | booted | reconcile | owner | held | PUBLISH | WITHDRAW
    uuid: str = ""
    dev: str = ""
    attempt: int = 0


class LibvirtEvents:
    def __init__(self, uris: tuple[str, ...], handlers: Handlers, stopping: threading.Event,
                 held: set[str] | None = None):
        self.uris = uris
        self.handlers = handlers
        self.stopping = stopping
        self.held = held if held is not None else set()
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.conns: dict[str, object] = {}
        self.connected = {uri: threading.Event() for uri in uris}
        self.connections = {uri: 0 for uri in uris}  # how often each was (re)opened

    def start(self) -> None:
        import libvirt

        libvirt.virEventRegisterDefaultImpl()  # before the first connection is opened
        threading.Thread(target=self._loop, name="libvirt-loop", daemon=True).start()
        threading.Thread(target=self._work, name="libvirt-work", daemon=True).start()
        for uri in self.uris:
            threading.Thread(target=self._follow, args=(uri,), name=f"libvirt {uri}",
                             daemon=True).start()

    # from the netlink watcher
    def changed(self, driver: str, uuid: str) -> None:
        """A domain's devices changed: apply its live XML."""
        for uri in self.uris:
            if driver_of(uri) == driver:
                self.jobs.put(Job(uri, "apply", uuid))

    def owner_of(self, dev: str, driver: str = "lxc") -> None:
        """A new host device nobody wired: find the running domain that names it."""
        for uri in self.uris:
            if driver_of(uri) == driver:
                self.jobs.put(Job(uri, "owner", dev=dev))

    # threads
    def _loop(self) -> None:
        import libvirt

        while not self.stopping.is_set():
            try:
                libvirt.virEventRunDefaultImpl()
            except libvirt.libvirtError as exc:
                log.error("libvirt event loop: %s", exc.get_error_message())

    def _follow(self, uri: str) -> None:
        """Keep one connection open: connect (with backoff), register, wait for close."""
        while not self.stopping.is_set():
            conn = self._connect(uri)
            if conn is None:
                return
            closed = threading.Event()
            try:
                self._register(uri, conn, closed)
            except Exception as exc:  # a connection that died under us: start over
                log.warning("%s: cannot follow events: %s", uri, exc)
                _close(conn)
                continue
            self.conns[uri] = conn
            self.connections[uri] += 1
            self.connected[uri].set()
            log.info("following libvirt events on %s", uri)
            self.jobs.put(Job(uri, "reconcile"))
            if self.handlers.following is not None:
                self.handlers.following(driver_of(uri))
            while not closed.wait(HELD_CHECK_S):
                if self.stopping.is_set():
                    break
                if self._held_uuids(driver_of(uri)):
                    self.jobs.put(Job(uri, "held"))
            self.connected[uri].clear()
            self.conns.pop(uri, None)
            _close(conn)
            if not self.stopping.is_set():
                log.warning("lost the connection to %s: reconnecting", uri)

    def _connect(self, uri: str):
        import libvirt
        from tenacity import Retrying, retry_if_exception_type, wait_exponential

        failures = 0

        def note(state) -> None:
            nonlocal failures
            failures += 1
            if failures == 1:
                exc = state.outcome.exception()
                log.warning("cannot connect to %s (%s): retrying", uri,
                            exc.get_error_message() if hasattr(exc, "get_error_message")
                            else exc)

        retrying = Retrying(
            retry=retry_if_exception_type(libvirt.libvirtError),
            wait=wait_exponential(multiplier=0.1, max=BACKOFF_MAX_S),
            stop=lambda _state: self.stopping.is_set(),
            sleep=self.stopping.wait,
            before_sleep=note,
            reraise=True,
        )
        try:
            return retrying(libvirt.open, uri)
        except libvirt.libvirtError:
            return None  # stopping

    def _register(self, uri: str, conn, closed: threading.Event) -> None:
        import libvirt

        def queue_apply(_conn, dom, *_rest):
            self.jobs.put(Job(uri, "apply", dom.UUIDString()))

        def metadata(_conn, dom, mtype, nsuri, _opaque):
            if mtype == libvirt.VIR_DOMAIN_METADATA_ELEMENT and nsuri == XMLNS:
                self.jobs.put(Job(uri, "apply", dom.UUIDString()))

        def lifecycle(_conn, dom, event, detail, _opaque):
            moved = migration.action(event, detail)
            if moved is not None:  # first: the LAN follows a migrated guest at once
                self.jobs.put(Job(uri, moved, dom.UUIDString()))
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                self.jobs.put(Job(uri, "stopped", dom.UUIDString()))
            elif event == libvirt.VIR_DOMAIN_EVENT_STARTED and driver_of(uri) == "lxc":
                self.jobs.put(Job(uri, "booted", dom.UUIDString()))

        conn.registerCloseCallback(lambda *_a: closed.set(), None)
        conn.setKeepAlive(KEEPALIVE_S, KEEPALIVE_COUNT)
        for event, cb in ((libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, queue_apply),
                          (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, queue_apply),
                          (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, metadata),
                          (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle)):
            conn.domainEventRegisterAny(None, event, cb, None)

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._do(job)
            except Exception as exc:  # one bad event must not end event handling
                log.error("%s: %s event: %s: %s", job.uri, job.kind, type(exc).__name__, exc)

    def _do(self, job: Job) -> None:
        import libvirt

        conn = self.conns.get(job.uri)
        if conn is None:
            return  # the reconnect reconciles everything anyway
        driver = driver_of(job.uri)
        if job.kind == "reconcile":
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            xmls = [d.XMLDesc(0).encode() for d in doms]
            self.handlers.reconcile(driver, xmls)
            for dom, xml in zip(doms, xmls, strict=True):  # a resumed event we missed
                if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                    self.handlers.publish(driver, xml, True)
            return
        if job.kind == migration.WITHDRAW:  # from the record: the XML may be gone
            self.handlers.withdraw(f"{driver}-{job.uuid}")
            return
        if job.kind == "owner":
            self._find_owner(conn, driver, job)
            return
        if job.kind == "held":
            self.publish_running(conn, driver)
            return
        try:
            dom = conn.lookupByUUIDString(job.uuid)
            active = dom.isActive()
            xml = dom.XMLDesc(0).encode() if active else b""
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            active, xml = False, b""  # a transient domain that is gone
        if job.kind == "stopped":
            if not active:
                self.handlers.stopped(f"{driver}-{job.uuid}")
        elif job.kind == "booted":
            if active and self.handlers.booted is not None:
                self.handlers.booted(dom, xml)
        elif job.kind == migration.PUBLISH:
            if active:
                self.handlers.publish(driver, xml, False)
        elif active:
            self.handlers.apply(driver, xml)

    def _held_uuids(self, driver: str) -> list[str]:
        prefix = f"{driver}-"
        return [k[len(prefix):] for k in list(self.held) if k.startswith(prefix)]

    def publish_running(self, conn, driver: str) -> None:
        """Held-back guests that run here by now: published (only_held, so a resumed
        event handled meanwhile makes this a no-op); paused ones wait; gone ones are left
        to their `stopped` hook."""
        import libvirt

        for uuid in self._held_uuids(driver):
            try:
                dom = conn.lookupByUUIDString(uuid)
                if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                    continue
                xml = dom.XMLDesc(0).encode()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                continue
            self.held.discard(f"{driver}-{uuid}")
            self.handlers.publish(driver, xml, True)

    def _find_owner(self, conn, driver: str, job: Job) -> None:
        import libvirt

        needle = f"<target dev='{job.dev}'/>".encode()
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                xml = dom.XMLDesc(0).encode()
            except libvirt.libvirtError:
                continue  # stopped meanwhile
            if needle in xml:
                self.handlers.apply(driver, xml)
                return
        if job.attempt == 0:
            retry = Job(job.uri, "owner", dev=job.dev, attempt=1)
            timer = threading.Timer(OWNER_RETRY_S, self.jobs.put, (retry,))
            timer.daemon = True
            timer.start()


def _close(conn) -> None:
    with contextlib.suppress(Exception):  # already closed
        conn.unregisterCloseCallback()
    with contextlib.suppress(Exception):
        conn.close()
