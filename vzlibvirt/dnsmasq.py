"""The managed dnsmasq: its config, and a supervisor that keeps exactly one running
(run by the agent, or in the foreground by `vzlibvirt dhcp`, dhcp_cli.py).

Why one fixed config: a routed VM's tap holds only 169.254.0.1/32, so no dhcp-range
matches it by itself. `shared-network=169.254.0.1,ADDR` lets a range on ADDR's subnet
serve every interface holding 169.254.0.1, and two static ranges with netmask 128.0.0.0
(0.0.0.0/1 and 128.0.0.0/1) cover every IPv4 address. So any guest IP on any subnet is
served from the hosts file alone: the main config never changes while guests come and
go, and dnsmasq never restarts for a new guest or subnet (dnsmasq re-reads only the
hosts file on SIGHUP). The ranges' netmask never reaches a guest: the netmask option is
forced to 255.255.255.255 and the range's broadcast is 0.0.0.0, which dnsmasq omits.

Who answers what: static ranges hand out only hosts-file addresses, `dhcp-ignore`
drops unknown MACs, each host line carries `tag:TAP` so a MAC is served only on its own
tap, dnsmasq listens only on taps matching [dhcp] interface (never the uplink), and
bridged taps are bridge ports whose packets reach the bridge, not the tap. `port=0`:
no DNS. The supervisor holds the state lock while it rebuilds the hosts file from the
state records and starts dnsmasq, so a hook never adds a line that the new dnsmasq
misses; if dnsmasq dies it is started again the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from vzlibvirt import dhcp, singleton
from vzlibvirt.config import Config
from vzlibvirt.entries import DhcpHost
from vzlibvirt.errors import VzError
from vzlibvirt.state import StateStore

log = logging.getLogger("vzlibvirt.dhcp")
CONF = "dnsmasq.conf"
LOCK = "supervisor.lock"
RESTART_DELAY = (0.2, 1.0, 5.0)  # seconds before restart 1, 2, 3+ in a row


class DhcpBusy(VzError):
    """Another supervisor (agent or `vzlibvirt dhcp`) already runs dnsmasq here."""


def render_config(config: Config, directory: Path) -> str:
    gw = str(config.routed.gateway4)
    d = config.dhcp
    lease = d.lease_time
    blocked = _blocked_for_others(directory)
    lines = [
        "# written by vzlibvirt (dnsmasq.py): DHCPv4 for routed VMs; do not edit",
        "port=0",
        "bind-dynamic",
        f"interface={d.interface}",
        "except-interface=lo",
        "no-resolv",
        "no-hosts",
        "leasefile-ro",  # every address is static per MAC: leases carry nothing to keep
        "dhcp-ignore-clid",
        "dhcp-authoritative",
        f"pid-file={directory / dhcp.PIDFILE}",
        f"dhcp-hostsfile={directory / dhcp.HOSTS}",
        f"shared-network={gw},0.0.0.1",
        f"shared-network={gw},128.0.0.1",
        f"dhcp-range=set:vzrouted,0.0.0.1,static,128.0.0.0,0.0.0.0,{lease}",
        f"dhcp-range=set:vzrouted,128.0.0.1,static,128.0.0.0,0.0.0.0,{lease}",
        "dhcp-ignore=tag:!known",
        "dhcp-option=tag:vzrouted,option:netmask,255.255.255.255",
        f"dhcp-option=tag:vzrouted,option:router,{gw}",
        f"dhcp-option=tag:vzrouted,option:classless-static-route,{gw}/32,0.0.0.0,"
        f"0.0.0.0/0,{gw}",
    ]
    if d.dns_servers:
        lines.append("dhcp-option=tag:vzrouted,option:dns-server,"
                     + ",".join(str(ip) for ip in d.dns_servers))
    if blocked is not None:
        # dnsmasq re-reads the hosts file after dropping root to `nobody`, who cannot
        # reach it here: keep root rather than serve nothing
        lines.append("user=root")
    return "\n".join(lines) + "\n"


def _blocked_for_others(directory: Path) -> Path | None:
    """The first ancestor of `directory` that other users cannot traverse, if any."""
    for d in (directory, *directory.parents):
        try:
            if not d.stat().st_mode & 0o001:
                return d
        except FileNotFoundError:
            continue
    return None


def desired_hosts(store: StateStore, directory: Path) -> list[str]:
    """Every DHCP host line the state records ask for (the records are the truth)."""
    lines: list[str] = []
    for record in store.records():
        for irec in record.interfaces:
            for applied in irec.entries:
                e = applied.entry
                if isinstance(e, DhcpHost) and Path(e.dir) == directory \
                        and e.line not in lines:
                    lines.append(e.line)
    return lines


def find_dnsmasq() -> str:
    exe = shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None)
    if exe is None:
        raise VzError("dnsmasq is not installed (Debian: apt-get install dnsmasq-base)")
    return exe


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the supervising thread's process dies (even by
    SIGKILL), so no dnsmasq outlives its supervisor. Only a preloaded C call here."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _kill_orphan(directory: Path) -> None:
    """A dnsmasq of ours still running (its supervisor died) would answer beside the new
    one: end it first."""
    pid = dhcp.dnsmasq_pid(directory)
    if pid is None:
        return
    log.warning("ending orphaned dnsmasq %d", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)


class Supervisor:
    """Runs dnsmasq in the foreground as its child and restarts it when it exits."""

    def __init__(self, config: Config):
        self.config = config
        self.store = StateStore(config.state.dir)
        self.dir = dhcp.dhcp_dir(config.state.dir)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.stopping = threading.Event()
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        self.store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        dhcp.ensure_dir(self.dir)
        try:
            self._lock_fd = singleton.hold(self.dir / LOCK)
        except singleton.AlreadyRunning as exc:
            raise DhcpBusy(f"another DHCP supervisor (pid {exc.pid}) already runs dnsmasq "
                           f"for {self.store.root}") from None

    def start_dnsmasq(self) -> int:
        """Rebuild the hosts file and start dnsmasq, all under the state lock; its pid."""
        exe = find_dnsmasq()
        conf = self.dir / CONF
        conf.write_text(render_config(self.config, self.dir))
        blocked = _blocked_for_others(self.dir)
        if blocked is not None:
            log.warning("%s is not traversable by other users: dnsmasq keeps root to "
                        "read %s", blocked, self.dir / dhcp.HOSTS)
        os.chmod(conf, 0o644)
        pidfile = self.dir / dhcp.PIDFILE
        with self.store.locked():
            _kill_orphan(self.dir)
            dhcp.write_hosts(self.dir, desired_hosts(self.store, self.dir))
            dhcp.write_hosts(self.dir, [], dhcp.RELEASED)  # a new dnsmasq holds no lease
            pidfile.unlink(missing_ok=True)
            self.proc = subprocess.Popen(
                [exe, "--keep-in-foreground", f"--conf-file={conf}", "--log-facility=-"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=None, close_fds=True, preexec_fn=_die_with_parent)
            self.starts += 1
            # hooks signal the pid in the pid file: hold the lock until it is there
            deadline = time.monotonic() + 10
            while dhcp.dnsmasq_pid(self.dir) != self.proc.pid:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        log.info("dnsmasq %d started (%s)", self.proc.pid, conf)
        return self.proc.pid

    def run(self) -> None:
        """Supervise until stop(): dnsmasq exiting, for any reason, means a restart."""
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.start_dnsmasq()
            except (OSError, VzError) as exc:
                log.error("cannot start dnsmasq: %s", exc)
            else:
                assert self.proc is not None
                while self.proc.poll() is None and not self.stopping.wait(0.2):
                    pass
                if self.stopping.is_set():
                    break
                log.warning("dnsmasq %d exited (status %s): restarting", self.proc.pid,
                            self.proc.returncode)
            failures = failures + 1 if time.monotonic() - started < 10 else 1
            self.stopping.wait(RESTART_DELAY[min(failures, len(RESTART_DELAY)) - 1])
        self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / dhcp.PIDFILE).unlink()

    def stop(self, *_args) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.stop()
        self.kill()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def start_in_thread(config: Config) -> Supervisor | None:
    """For the agent: supervise dnsmasq beside its other work, when [dhcp] enable is
    true and no other supervisor runs."""
    if not config.dhcp.enable:
        return None
    sup = Supervisor(config)
    try:
        sup.acquire()
    except (DhcpBusy, OSError) as exc:
        log.warning("not supervising dnsmasq: %s", exc)
        return None
    threading.Thread(target=sup.run, name="dnsmasq-supervisor", daemon=True).start()
    return sup
