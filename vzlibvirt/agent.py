"""`vzlibvirt agent`: the resident process that owns the netlink work.

Why: libvirt runs the hook synchronously five times per guest life, and a Python
process that imports lxml and pyroute2 costs ~200 ms per call; the agent imports them
once, and the hook's thin client (hookclient.py) hands it the call over a root-only
UNIX socket. It also watches netlink link events and re-publishes our
entries the moment a device comes back up or gets its carrier back (an administrative
down flushes proxy entries; on Linux 6.1 a carrier loss does too), repairs drift every
`[agent] resync_s` (resync.py), and follows libvirt's domain events (libvirt_events.py)
for what no hook sees: hot-plugged interfaces, live metadata changes, guests that
stopped without their hook. The state files stay the single source of truth: the agent
keeps nothing that a crash or restart could lose.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import socket
import struct
import threading
from pathlib import Path

from vzlibvirt import hook as hookmod
from vzlibvirt import netdev, ra, singleton
from vzlibvirt.config import Config, config_path, load_config
from vzlibvirt.contract import (
    DOMAIN_DRIVERS,
    MAX_XML_BYTES,
    decode,
    encode,
    following_path,
    recv_all,
)
from vzlibvirt.errors import EXIT_OK, VzError
from vzlibvirt.fsutil import atomic_write
from vzlibvirt.link_events import RCVBUF_START, LinkTracker, LinkWatch, LinkWork, Overflow
from vzlibvirt.service import exec_command, run_foreground
from vzlibvirt.state import RecordIndex, StateStore

log = logging.getLogger("vzlibvirt.agent")
MAX_REQUEST = MAX_XML_BYTES + (1 << 16)  # the XML limit plus room for the arguments
INDEX_REFRESH_S = 2.0
NEW_DEVICE_GRACE_S = 0.3  # a starting guest's hook wires its device within this
# logged after each reconcile of a driver's running guests; benches and tests wait for it
RECONCILED_LINE = "reconciled %d running %s domains (%d changes)"
_RECONCILED = re.compile(r"reconciled (\d+) running (\w+) domains \((\d+) changes\)")


def reconciles(log_text: str, driver: str) -> list[tuple[int, int]]:
    """(domains, changes) of each reconcile of DRIVER's guests in an agent's log."""
    return [(int(m[1]), int(m[3])) for m in _RECONCILED.finditer(log_text) if m[2] == driver]


class AgentBusy(VzError):
    """Another agent already serves this state dir."""


class Agent:
    def __init__(self, config: Config, socket_path: Path | None = None):
        self.config = config
        self.socket_path = Path(socket_path or config.agent.socket)
        self.store = StateStore(config.state.dir)
        self.index = RecordIndex(self.store, observe=True)
        self.work = threading.Lock()  # one engine call at a time; each takes milliseconds
        self.stopping = threading.Event()
        self._config_mtime = self._mtime()
        self._lock_fd: int | None = None
        self._listener: socket.socket | None = None
        self.libvirt = None  # LibvirtEvents once serving, when [agent] connect names URIs
        self.link_rcvbuf = RCVBUF_START  # the link-event socket's; an overflow raises it
        self.watching = threading.Event()  # set once link events are followed
        self._resync_memory = None  # resync.Memory, kept between passes
        from vzlibvirt.netlink import Netlink

        self.resources = hookmod.Resources(config=config, netlink=Netlink(), store=self.store)

    # lifecycle
    def acquire(self) -> None:
        """Refuse to run beside another agent of the same state dir."""
        self.store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._lock_fd = singleton.hold(self.store.root / "agent.lock")
        except singleton.AlreadyRunning as exc:
            raise AgentBusy(f"another agent (pid {exc.pid}) already serves "
                            f"{self.store.root}") from None
        self._unfollow()  # a crashed agent's: its pid may be another process's by now

    def listen(self) -> None:
        path = self.socket_path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale: we hold the singleton lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        self._listener = sock

    def serve_forever(self) -> None:
        threading.Thread(target=self._watch_events, name="netlink-events", daemon=True).start()
        self.index.refresh()  # before the first event can ask for it
        threading.Thread(target=self._keep_index_warm, name="index", daemon=True).start()
        if self.config.agent.resync_s:
            threading.Thread(target=self._resync_forever, name="resync", daemon=True).start()
        self.libvirt = self._follow_libvirt()
        from vzlibvirt.dnsmasq import start_in_thread

        self.dhcp = start_in_thread(self.config)  # [dhcp] enable: dnsmasq under the agent
        self.ra = None
        if self.dhcp is not None:  # IPv6 routed VMs: router advertisements beside DHCP
            self.ra = ra.start_in_thread(self.store, str(self.config.routed.gateway6))
        log.info("agent %d listening on %s (state %s)", os.getpid(), self.socket_path,
                 self.store.root)
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        self.close()

    def stop(self, *_args) -> None:
        self.stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def close(self) -> None:
        if getattr(self, "ra", None) is not None:
            self.ra.stop()
        if getattr(self, "dhcp", None) is not None:
            self.dhcp.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self._lock_fd is not None:
            self._unfollow()  # the hooks re-apply at `reconnect` again
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("agent %d stopped", os.getpid())

    # requests
    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))[1]
                request = recv_all(conn, MAX_REQUEST)
                if uid != 0:
                    reply = [b"1", b"vzlibvirt: the agent serves root only\n", b""]
                else:
                    reply = self.handle(decode(request))
            except (OSError, ValueError) as exc:
                log.warning("bad request: %s", exc)
                return
            with contextlib.suppress(OSError):
                conn.sendall(encode(reply))

    def handle(self, fields: list[bytes]) -> list[bytes]:
        if fields[:1] == [b"ping"]:
            return [b"0", b"", b"pong"]
        if fields[:1] in ([b"check"], [b"check-stopped"], [b"apply"]) and len(fields) == 3:
            return self.serve_live(fields[0].decode(), fields[1].decode(errors="replace"),
                                   fields[2])
        if len(fields) < 3 or fields[0] != b"hook":
            return [b"2", b"vzlibvirt: unknown agent request\n", b""]
        env = dict(kv.decode(errors="replace").partition("=")[::2]
                   for kv in fields[1].split(b"\0") if b"=" in kv)
        argv = [f.decode(errors="replace") for f in fields[2:-1]]
        out, err = io.BytesIO(), io.StringIO()
        with self.work:
            self._refresh_config()
            rc = hookmod.main(argv, stdin=io.BytesIO(fields[-1]), stdout=out, stderr=err,
                              resources=self.resources, env=env)
        return [str(rc).encode(), err.getvalue().encode(), out.getvalue()]

    def _mtime(self) -> float | None:
        try:
            return (self.config.path or config_path()).stat().st_mtime
        except OSError:
            return None

    def _refresh_config(self) -> None:
        """Pick up an edited config file without a restart (an invalid one is kept out)."""
        mtime = self._mtime()
        if mtime == self._config_mtime:
            return
        try:
            self.config = load_config(self.config.path)
        except VzError as exc:
            log.error("%s (keeping the previous config)", exc.line())
            return
        self._config_mtime = mtime
        self.resources.config = self.config

    def serve_live(self, op: str, driver: str, data: bytes) -> list[bytes]:
        """`vzlibvirt set` asks: check a domain's new XML, or apply its live XML."""
        from vzlibvirt import live

        with self.work:
            self._refresh_config()
            rc, err = live.serve(op, driver, data, self.config, self.store,
                                 self.resources.netlink)
        for line in err.splitlines():
            log.info("%s: %s", op, line)
        return [str(rc).encode(), err.encode(), b""]

    # libvirt events (never called from a hook request: see libvirt_events.py)
    def _follow_libvirt(self):
        if not self.config.agent.connect:
            return None
        from vzlibvirt.libvirt_events import Handlers, LibvirtEvents

        events = LibvirtEvents(self.config.agent.connect, Handlers(
            apply=self._event_apply, stopped=self._event_stopped,
            reconcile=self._event_reconcile, publish=self._event_publish,
            withdraw=self._event_withdraw, booted=self._event_booted,
            following=self._event_following), self.stopping,
            held=self.resources.held)
        # a migration's destination holds the LAN back until the resumed event
        self.resources.follows_events = True
        events.start()
        return events

    def _event_following(self, driver: str) -> None:
        """Connected to libvirt for DRIVER: the shim may now leave `reconnect` to us (we
        reconcile every running domain each time libvirtd serves again), while we live."""
        path = following_path(self.store.root, driver)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(path, f"{os.getpid()}\n".encode())

    def _unfollow(self) -> None:
        for driver in DOMAIN_DRIVERS:
            following_path(self.store.root, driver).unlink(missing_ok=True)

    def _event_booted(self, dom, data: bytes) -> None:
        """A container started: its routed IPv6 addresses out of duplicate address
        detection at once, and the host's resolution of them, unanswered meanwhile,
        started afresh, so IPv6 answers as soon as IPv4 does (docs/migration.md)."""
        from vzlibvirt import guest_inside, live
        from vzlibvirt.model import Mode

        try:
            domain = live.parse_live(data, "lxc", self.config)
        except VzError:
            return  # not ours, or refused: nothing of it is wired
        todo = [(i, [str(ip) for ip in i.ips if ip.version == 6])
                for i in domain.managed_interfaces if i.mode is Mode.ROUTED and i.mac]
        todo = [(i, v6) for i, v6 in todo if v6]
        if not todo:
            return
        try:
            with guest_inside.container_netns(dom) as fd:
                for iface, v6 in todo:
                    ended = guest_inside.end_dad(fd, iface.mac, v6)
                    if not ended:
                        continue
                    index = netdev.ifindex(iface.host_dev) if iface.host_dev else None
                    if index is not None:
                        with self.work:
                            for ip in ended:
                                self.resources.netlink.neigh_forget(ip, index)
                    log.info("%s: %s without duplicate address detection", domain.name,
                             ", ".join(ended))
        except VzError as exc:
            log.warning("%s: %s", domain.name, exc.line())

    def _event_publish(self, driver: str, data: bytes, only_held: bool) -> None:
        """A migrated guest resumed here (or on its source, the migration having failed):
        proxy entries and routes in, the LAN told at once (migration.py)."""
        from vzlibvirt import migration

        with self.work:
            try:
                outcome = migration.publish(data, driver, self.config, self.store,
                                            self.resources.netlink, only_held=only_held)
            except VzError as exc:
                log.error("%s", exc.line())
                return
        if outcome is not None:
            log.info("migrated guest resumed: published (%d entries added)",
                     len(outcome.added))

    def _event_withdraw(self, key: str) -> None:
        """A guest paused or left for a migration's destination."""
        from vzlibvirt.engine import withdraw

        with self.work:
            try:
                outcome = withdraw(key, self.store, self.resources.netlink)
            except VzError as exc:
                log.error("%s", exc.line())
                return
        if outcome.removed:
            log.info("%s left for a migration: withdrawn %d entries", key,
                     len(outcome.removed))

    def _event_apply(self, driver: str, data: bytes) -> None:
        from vzlibvirt import live

        with self.work:
            try:
                outcome = live.apply(data, driver, self.config, self.store,
                                     self.resources.netlink)
            except VzError as exc:  # refused by the rules: applied not at all
                log.error("%s", exc.line())
                return
        if outcome is not None:
            for line in outcome.removed:
                log.info("live change: removed %s", line)

    def _event_stopped(self, key: str) -> None:
        from vzlibvirt import live

        with self.work:
            try:
                outcome = live.forget_if_gone(key, self.store, self.resources.netlink)
            except VzError as exc:
                log.error("%s", exc.line())
                return
        if outcome is not None:
            log.info("%s stopped: removed %d entries", key, len(outcome.removed))

    def _event_reconcile(self, driver: str, xmls: list[bytes]) -> None:
        from vzlibvirt import live

        with self.work:
            lines = live.reconcile_driver(driver, xmls, self.config, self.store,
                                          self.resources.netlink)
        log.info(RECONCILED_LINE, len(xmls), driver, len(lines))
        for line in lines:
            log.info("%s", line)

    # drift repair
    def _resync_forever(self) -> None:
        while not self.stopping.wait(self.config.agent.resync_s):
            try:
                self.resync()
            except Exception as exc:  # never let the repair loop die
                log.error("resync: %s: %s", type(exc).__name__, exc)

    def resync(self):
        from vzlibvirt.resync import Memory, resync

        with self.work:
            if self._resync_memory is None:
                self._resync_memory = Memory()
            return resync(self.store, self.resources.netlink, self.index, self._resync_memory)

    # netlink events
    def _watch_events(self) -> None:
        """Re-publish on a device that comes back up, or gets its carrier back.

        An administrative down flushes the device's proxy entries (and IPv4 routes and
        IPv6 addresses through it); Linux before 6.6 (Debian 12's 6.1) flushes proxy
        entries on a carrier loss as well, so both up-again transitions (IFF_UP and
        IFF_LOWER_UP) matter; address changes do not touch our entries. A device seen up
        for the first time is new (a guest starting): its hook is wiring it, and the agent
        stays out of the way, so starting guests costs no event work however many guests
        the host has. Lost events (an overflow in a burst) are made up for by comparing a
        fresh dump of the links with what the watcher knew.
        """
        while not self.stopping.is_set():
            try:
                with LinkWatch(self.link_rcvbuf) as watch:
                    links = LinkTracker(watch.dump())
                    self.watching.set()
                    while not self.stopping.is_set():
                        try:
                            events = watch.read()
                        except Overflow as exc:
                            log.warning("netlink events: %s; links re-read, entries "
                                        "compared with the kernel", exc)
                            self._on_link_events(links.feed(links.missed(watch.dump())))
                            self._catch_up()  # a lost down-up of a device shows nowhere else
                            continue
                        self._on_link_events(links.feed(events))
            except Exception as exc:  # a broken socket must not kill the agent
                log.error("netlink events: %s: %s (watching again in 1 s)",
                          type(exc).__name__, exc)
                self.stopping.wait(1.0)

    def _catch_up(self) -> None:
        """Put back whatever the kernel dropped while link events were lost: one resync
        pass (a few dumps) instead of re-publishing on every device."""
        self.index.refresh()
        done = self.resync()
        if done.repaired or done.failed:
            log.info("after lost link events: %d entries re-added, %d failed",
                     len(done.repaired), len(done.failed))

    def _on_link_events(self, todo: LinkWork) -> None:
        for dev in todo.up_again:
            self.heal(dev)
        for dev, index in todo.gone:
            self.forget_guest_device(dev, index)
        for dev in todo.new_veths:
            if self.libvirt is not None:
                timer = threading.Timer(NEW_DEVICE_GRACE_S, self._unclaimed, (dev,))
                timer.daemon = True
                timer.start()

    def _unclaimed(self, dev: str) -> None:
        """A new veth that no hook has wired by now: maybe a container's hot-plugged
        interface (the LXC driver sends no device event)."""
        if netdev.ifindex(dev) is None:
            return  # gone again (the container end of a veth moves into the container)
        if not self.index.records_for(dev):  # our own hook's write is in it already
            self.libvirt.owner_of(dev)

    def _keep_index_warm(self) -> None:
        """Parse new state records in the background (a few ms at 1,000 guests), so that
        re-publishing after an uplink flap starts at once instead of reading them all."""
        while not self.stopping.wait(INDEX_REFRESH_S):
            try:
                self.index.refresh()
            except Exception as exc:  # never let the refresher die
                log.warning("state index refresh: %s", exc)

    def forget_guest_device(self, dev: str, ifindex: int) -> list[str]:
        """A guest's host device went away: libvirt deletes the tap / veth before it runs
        the `stopped` hook, and a guest can die while libvirtd is down. Unwire the domains
        all of whose host devices are gone, at once; the `stopped` hook then finds no
        record and returns in the shell. A device that is merely renamed or re-created
        under the same name keeps its domain's record for the hooks and `reconcile`."""
        from vzlibvirt.engine import unwire

        forgotten = []
        with self.work:  # no rescan: the index holds our own writes, the refresher the rest
            for indexed in self.index.records_for(dev):
                record = self.store.load(indexed.key)  # the file, should the index lag
                if record is None:
                    continue
                devices = [(i.host_dev, i.ifindex) for i in record.interfaces]
                if (dev, ifindex) not in devices:
                    continue
                if any(netdev.ifindex(name) == idx for name, idx in devices):
                    if self.libvirt is not None:  # one interface detached: re-apply
                        self.libvirt.changed(record.driver, record.uuid)
                    continue
                try:
                    outcome = unwire(record.key, self.store, self.resources.netlink)
                except VzError as exc:
                    log.error("%s", exc.line())
                    continue
                forgotten.append(record.name)
                log.info("%s: its host device %s is gone: removed %d entries", record.name,
                         dev, len(outcome.removed))
        return forgotten

    def heal(self, dev: str) -> int:
        from vzlibvirt.engine import heal_device

        with self.work:
            outcome = heal_device(dev, self.store, self.resources.netlink, self.index)
        for line in outcome.added:
            log.info("re-published on %s: %s", dev, line)
        return len(outcome.added)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vzlibvirt agent",
                                     description="Run the resident vzlibvirt agent.")
    parser.add_argument("--socket", type=Path, help="override [agent] socket")
    parser.add_argument("--print-unit", action="store_true",
                        help="print a systemd unit for this installation and exit")
    args = parser.parse_args(argv)
    if args.print_unit:
        unit = Path(__file__).with_name("data") / "vzlibvirt-agent.service"
        print(unit.read_text().replace("@EXEC@", exec_command()), end="")
        return EXIT_OK

    def start():
        agent = Agent(load_config(), args.socket)
        agent.acquire()
        agent.listen()
        return agent.serve_forever, agent.stop

    return run_foreground("vzlibvirt-agent", start)
