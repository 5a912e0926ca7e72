"""`lab up --hosts 2`: host A and host B, each a lab host as in the one-host lab (its
own network, mount and UTS namespace, private libvirtd, br0 over its uplink, vzlibvirt's
hooks and agent), both uplinks on one LAN with Computer X, the daemons listening for
live migrations on their LAN addresses (docs/lab.md, docs/migration.md).

The hosts are `Lab`s with another HostSpec; this module only builds the shared LAN,
brings both up and down together, and migrates. With `bgp` the hosts are a routed fabric
(`neighbour_devs = "none"`) and the LAN also holds a BGP router (fabric.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass

from . import settings as S
from .fabric import Fabric
from .lab import Lab, check_prerequisites
from .sh import LabError, progress
from .topology import Topology, netns_exists


@dataclass(frozen=True)
class Move:
    """One `virsh migrate --live --p2p`: how it ended and QEMU's own figures."""

    ok: bool
    seconds: float  # the virsh call, start to end
    downtime_ms: int | None  # QEMU's "Total downtime" (source's completed job)
    error: str = ""


class TwoHostLab:
    def __init__(self, *, bgp: bool = False) -> None:
        self.bgp = bgp
        self.hosts = tuple(Lab(S.two_host_paths(spec), spec, S.TWO_LAN_NETNS, S.HOSTS_TWO,
                               routed_fabric=bgp)
                           for spec in S.HOSTS_TWO)
        self.a, self.b = self.hosts
        self.lan = Topology(prefix=S.TWO_PREFIX, lan_ns=S.TWO_LAN_NETNS,
                            namespaces=[s.netns for s in S.HOSTS_TWO])
        self.fabric = Fabric(self.lan, self.hosts, self.root / "bgp")

    @property
    def root(self):
        return self.a.paths.root.parent

    def exists(self) -> bool:
        """Anything of it on the machine (also a half one)."""
        return self.root.exists() or self.fabric.exists() or any(map(netns_exists,
                                              (*self.lan.namespaces, self.lan.lan)))

    def is_up(self) -> bool:
        """Both hosts up, with the BGP fabric exactly when asked for (a lab of the other
        kind is rebuilt: its hosts' neighbour_devs differ)."""
        fabric = self.fabric.healthy() if self.bgp else not self.fabric.exists()
        return fabric and all(h.is_up() for h in self.hosts)

    def up(self, *, python: str | None = None, hooks: bool = True, agent: bool = True) -> None:
        """Idempotent like the one-host lab's `up`; a failed `up` removes what it made."""
        check_prerequisites()
        if self.is_up():
            progress(f"two-host lab already up ({self.root})")
            return
        if self.exists():
            progress("leftovers of an earlier two-host lab found: taking them down first")
            self.down()
        try:
            progress(f"namespaces {', '.join(s.netns for s in S.HOSTS_TWO)} and {self.lan.lan} "
                     f"(Computer X {S.X_IP4} on a bridge holding both uplinks)")
            self.lan.up_lan(S.HOSTS_TWO)
            for host in self.hosts:
                host.up(python=python or sys.executable, hooks=hooks, agent=agent)
            if self.bgp:
                self.fabric.up()
        except BaseException:
            progress("two-host lab up failed: cleaning up")
            self.down(quiet=True)
            raise
        for host in self.hosts:
            progress(f"host {host.host.hostname}: virsh -c '{host.paths.uri('qemu')}', "
                     f"migrations to qemu+tcp://{host.host.address4}/system")

    def down(self, *, quiet: bool = False) -> None:
        if self.fabric.exists():  # whichever kind this object was made for
            self.fabric.down()
        # B first: A made the mount points and cgroup dirs both use, and removes them
        for host in reversed(self.hosts):
            host.down(quiet=quiet)
        from . import procs

        lan_id = procs.netns_id(self.lan.lan)
        if lan_id:  # ping loops of Computer X
            procs.kill_all(procs.lab_pids({lan_id}, set()))
        self.lan.close()
        if self.root.exists():
            self.root.rmdir()

    def lan_flush(self) -> None:
        """Computer X forgets every neighbour (tests reuse IPs with other MACs)."""
        self.a.in_lan(["ip", "neigh", "flush", "all"], check=False)

    def other(self, host: Lab) -> Lab:
        return self.b if host is self.a else self.a

    def start_migration(self, name: str, source: Lab,
                        bandwidth_mib: int | None = None) -> subprocess.Popen:
        """`virsh migrate --live --p2p` of NAME from SOURCE to the other host, driven on
        the source's socket (the source daemon connects to the destination over the LAN,
        never outside the lab's namespaces); the running virsh. A bandwidth (MiB/s) slows
        the transfer down, e.g. to abort it midway."""
        dest = self.other(source).host.address4
        argv = ["virsh", "-q", "-c", source.paths.uri("qemu"), "migrate", "--live", "--p2p",
                name, f"qemu+tcp://{dest}/system", "--migrateuri", f"tcp://{dest}"]
        if bandwidth_mib:
            argv += ["--bandwidth", str(bandwidth_mib)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def migrate(self, name: str, source: Lab, timeout: float = 180) -> Move:
        # QEMU's downtime comes with the source's job-completed event: after a move back,
        # the domain (transient on the host it left) is gone, and its job info with it
        events = subprocess.Popen(
            ["virsh", "-q", "-c", source.paths.uri("qemu"), "event", "--domain", name,
             "--event", "job-completed", "--timeout", str(int(timeout) + 10)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)  # registered before the migration can complete
        t0 = time.monotonic()
        proc = self.start_migration(name, source)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            events.kill()
            events.communicate()
            raise LabError(f"virsh migrate {name} timed out after {timeout}s") from exc
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            events.kill()
            events.communicate()
            return Move(False, seconds, None, err.strip())
        try:
            out, _ = events.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            events.kill()
            out, _ = events.communicate()
        return Move(True, seconds, downtime_ms(out))


def downtime_ms(event_text: str) -> int | None:
    """QEMU's downtime from `virsh event --event job-completed` (a `downtime: 77` line)."""
    m = re.search(r"^\s*downtime:\s*(\d+)\s*$", event_text, re.MULTILINE)
    return int(m.group(1)) if m else None
