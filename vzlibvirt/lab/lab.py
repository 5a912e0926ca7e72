"""`Lab`: bring the whole lab up and down, and act on its guests (the e2e fixture and the
`vzlibvirt lab` command both use this)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import hookinstall
from . import agent as lab_agent
from . import daemon, guests, images, procs
from . import settings as S
from .runner import LIBVIRT_ENV, Result, VzCli, in_netns
from .settings import LabPaths
from .sh import LabError, progress, run, wait_for
from .topology import Topology, netns_exists

PROBE_NAME = "00-vzlab-probe"  # in each <driver>.d, so it runs before ours
# A lab-only hook in front of ours: logs every call (and, when the flag file
# probe-links exists, the lab host's links) so tests can see what libvirt called.
PROBE = r"""#!/bin/sh
# vzlab-probe: lab-only call logger, removed with the lab.
xml=$(cat)
devs=$(printf '%s' "$xml" | grep -o "<target dev=['\"][^'\"]*" | sed "s/.*dev=.//" | tr '\n' ' ')
{
  echo "CALL @DRIVER@ $1 $2 $3 target=[$devs] t=$(date +%s.%N)"
  if [ -e @LAB@/probe-links ]; then
    ip -d -o link show | grep -v ' lo: ' | sed 's/^/  | /'
  fi
} >> @LAB@/hook-calls.log
exit 0
"""

TOML = """\
# vzlibvirt host config for the lab (written by `vzlibvirt lab up`).
[routed]
neighbour_devs = {neigh_devs}    # {neigh_why}

[state]
dir = "{state}"

[dhcp]
enable = true                 # the agent runs dnsmasq for routed VMs (docs/dhcp.md)

[agent]
socket = "{agent_socket}"
connect = ["{qemu_uri}", "{lxc_uri}"]   # the lab daemon's socket
resync_s = 3                  # drift repaired within 3 s (the e2e tests measure it)
"""

REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "libvirtd", "virtlogd", "virsh", "ping",
                  "qemu-system-x86_64", "busybox", "dpkg-deb", "apt-get", "mountpoint")


@dataclass
class Record:
    """What `up` made, so `down` removes exactly that even after a crash."""

    created_dirs: list[str] = field(default_factory=list)
    mnt_ns: str | None = None
    net_ids: list[str] = field(default_factory=list)
    new_cgroups: list[str] = field(default_factory=list)
    vm_kernel: str = ""
    vm_initrd: str = ""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> Record:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return cls()


class Lab:
    """One lab host. The one-host lab (the default) owns its LAN namespace; a host of
    the two-host lab (twohosts.py) shares the LAN that TwoHostLab builds and removes."""

    def __init__(self, paths: LabPaths | None = None, host: S.HostSpec = S.HOST,
                 lan: str = S.LAN_NETNS, peers: tuple[S.HostSpec, ...] = (), *,
                 routed_fabric: bool = False) -> None:
        self.paths = paths or LabPaths()
        self.host = host
        # a host of the BGP fabric: no proxy entries, its routing daemon announces routes
        self.routed_fabric = routed_fabric
        self.peers = peers  # every host of a two-host lab (its /etc/hosts)
        self.owns_lan = not peers
        self.topo = Topology(prefix=S.LAB_PREFIX, host_ns=host.netns, lan_ns=lan)

    # ---------- life cycle ----------
    def is_up(self) -> bool:
        return (
            self.paths.record.exists()
            and self.bridge_holds_uplink()
            and daemon.read_pid(self.paths, "libvirtd") is not None
            and self.virsh("lxc", "version", check=False).returncode == 0
        )

    def up(self, *, python: str | None = None, hooks: bool = True,
           agent: bool = True) -> None:
        """Idempotent: a healthy lab is left alone; a broken or half one is removed first;
        a failed `up` removes what it made before raising."""
        check_prerequisites()
        if self.is_up():
            progress(f"lab already up ({self.paths.root})")
            return
        if self.paths.root.exists() or (self.owns_lan and any(
                map(netns_exists, (self.topo.host, self.topo.lan)))):
            progress("leftovers of an earlier lab found: taking them down first")
            self.down()
        try:
            self._up(python or sys.executable, hooks, agent)
        except BaseException:
            progress("lab up failed: cleaning up")
            self.down(quiet=True)
            raise

    def _up(self, python: str, hooks: bool, agent: bool) -> None:
        p = self.paths
        rec = Record()
        for key in S.LIBVIRT_DIRS:
            p.lab(key).mkdir(parents=True, exist_ok=True)
        p.guests.mkdir()
        p.state.mkdir()
        rec.save(p.record)
        progress(f"guest images (cached in {p.cache})")
        vm = images.vm_image(p.cache)
        rec.vm_kernel, rec.vm_initrd = str(vm.kernel), str(vm.initrd)
        if self.owns_lan:
            progress(f"namespaces {self.topo.host} (uplink {S.UPLINK}) and {self.topo.lan} "
                     f"(Computer X {S.X_IP4})")
            self.topo.up()
        rec.net_ids = [i for i in map(procs.netns_id, self._namespaces()) if i]
        rec.save(p.record)
        # Mount points libvirt needs but this machine lacks: made empty, removed by down.
        for d in daemon.missing_mountpoints():
            os.makedirs(d)
            rec.created_dirs.append(d)
            rec.save(p.record)
        # libvirt makes /sys/fs/cgroup/<controller>/machine; remove those it adds.
        rec.new_cgroups = [str(Path(c) / "machine") for c in sorted(Path("/sys/fs/cgroup")
                           .glob("*")) if c.is_dir() and not (c / "machine").exists()]
        rec.save(p.record)
        neigh = (('"none"', "a routed fabric: BIRD announces the guest routes")
                 if self.routed_fabric else
                 (f'["{S.NEIGH_DEV}"]', "br0 holds the uplink: ARP from the LAN arrives there"))
        p.config.write_text(TOML.format(neigh_devs=neigh[0], neigh_why=neigh[1], state=p.state,
                                         agent_socket=lab_agent.socket_path(p),
                                         qemu_uri=p.uri("qemu"), lxc_uri=p.uri("lxc")))
        progress(f"bridge {S.BRIDGE} over {S.UPLINK} (vzlibvirt bridge create)")
        self.bridge("create", S.BRIDGE, "--uplink", S.UPLINK, python=python)
        daemon.write_configs(p, self.host, self.peers)
        self._install_hooks(python, hooks)
        progress(f"starting the private libvirtd of {self.topo.host} (virtlogd + libvirtd)")
        daemon.start(p, self.host)
        pid = daemon.read_pid(p, "libvirtd")
        rec.mnt_ns = os.readlink(f"/proc/{pid}/ns/mnt") if pid else None
        rec.save(p.record)
        if hooks and agent:
            progress("starting the vzlibvirt agent in the lab host")
            self.start_agent(python)
        progress(f"lab up: virsh -c '{p.uri('lxc')}' (or qemu:///...)")

    def _install_hooks(self, python: str, ours: bool) -> None:
        p = self.paths
        if ours:
            hookinstall.install(p.hooks, python, str(p.config),
                                str(lab_agent.socket_path(p)))
        for driver in ("qemu", "lxc"):
            (p.hooks / f"{driver}.d").mkdir(parents=True, exist_ok=True)
            probe = p.hooks / f"{driver}.d" / PROBE_NAME
            probe.write_text(PROBE.replace("@DRIVER@", driver).replace("@LAB@", str(p.root)))
            probe.chmod(0o755)

    def down(self, *, quiet: bool = False) -> None:
        """Remove every guest, process, namespace, mount point and file the lab made."""
        p = self.paths
        say = (lambda _m: None) if quiet else progress
        rec = Record.load(p.record)
        if daemon.read_pid(p, "libvirtd") is not None:
            say("destroying guests")
            try:
                for drv in ("lxc", "qemu"):
                    for name in self.domains(drv):
                        self.virsh(drv, "destroy", name, check=False, timeout=60)
                        self.virsh(drv, "undefine", name, check=False, timeout=30)
            except LabError as exc:  # a hung daemon: the process sweep below still works
                print(f"[lab] warning: {exc}", file=sys.stderr)
        net_ids = set(rec.net_ids) | {i for i in map(procs.netns_id, self._namespaces())
                                      if i}
        mnt_ids = {rec.mnt_ns} if rec.mnt_ns else set()
        pids = procs.lab_pids(net_ids, mnt_ids)
        orphans = procs.rooted_under(f"{p.guests}/")
        pids |= set(orphans)
        if pids:
            say(f"stopping {len(pids)} lab process(es)")
            procs.kill_all(pids)
        # the cgroups libvirt made for guests whose controller died before them
        for cg in {c for paths in orphans.values() for c in paths if "/machine/" in c}:
            for ctl in Path("/sys/fs/cgroup").glob("*"):
                with contextlib.suppress(OSError):
                    (ctl / cg.lstrip("/")).rmdir()
        if netns_exists(self.topo.host) and p.config.exists():
            # guests are gone, so br0 has no guest ports; the namespace goes anyway
            self.bridge("delete", S.BRIDGE, check=False)
        say("removing namespaces")
        if self.owns_lan:
            self.topo.close()
        elif netns_exists(self.topo.host):
            run(["ip", "netns", "del", self.topo.host], check=False)
        for cg in rec.new_cgroups:
            _rmdir_tree(Path(cg))
        for d in reversed(rec.created_dirs):
            try:
                os.rmdir(d)
            except OSError as exc:
                print(f"[lab] warning: could not remove {d}: {exc}", file=sys.stderr)
        if p.root.exists():
            shutil.rmtree(p.root)
        say("lab down")

    # ---------- guests ----------
    def virsh(self, driver: str, *args: str, check: bool = True, timeout: float = 120):
        return daemon.virsh(self.paths, driver, *args, check=check, timeout=timeout)

    def domains(self, driver: str) -> list[str]:
        out = self.virsh(driver, "list", "--all", "--name", check=False)
        return [n for n in out.stdout.split() if n]

    def record(self) -> Record:
        return Record.load(self.paths.record)

    def define(self, g: guests.Guest, *, kvm: bool | None = None,
               xml: bytes | None = None) -> None:
        """Write and define G's XML (or XML, a variant of it); VMs use KVM only when
        VZLAB_KVM=1 (TCG otherwise)."""
        path = self.paths.guests / g.name / "domain.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(xml if xml is not None else self.domain_xml(g, kvm=kvm))
        self.virsh(g.driver, "define", str(path))

    def domain_xml(self, g: guests.Guest, *, kvm: bool | None = None) -> bytes:
        """G's domain XML, with its rootfs (container) made when missing."""
        if kvm is None:
            kvm = os.environ.get("VZLAB_KVM") == "1"
        gdir = self.paths.guests / g.name
        gdir.mkdir(parents=True, exist_ok=True)
        if g.kind == "ct":
            rootfs = gdir / "rootfs"
            if not rootfs.exists():
                images.container_rootfs(rootfs)
            return guests.container_xml(g, rootfs)
        rec = self.record()
        return guests.vm_xml(g, Path(rec.vm_kernel), Path(rec.vm_initrd), self.console(g),
                             kvm=kvm)

    def start(self, g: guests.Guest, *, check: bool = True) -> subprocess.CompletedProcess:
        result = self.virsh(g.driver, "start", g.name, check=False, timeout=180)
        xml = self.paths.guests / g.name / "domain.xml"
        if result.returncode != 0 and g.kind == "vm" and "type='kvm'" in xml.read_text():
            progress(f"{g.name}: KVM start failed, falling back to TCG")
            self.define(g, kvm=False)
            result = self.virsh(g.driver, "start", g.name, check=False, timeout=180)
        if check and result.returncode != 0:
            raise LabError(f"virsh start {g.name}: {result.stderr.strip()}")
        return result

    def destroy(self, g: guests.Guest, *, check: bool = True) -> subprocess.CompletedProcess:
        return self.virsh(g.driver, "destroy", g.name, check=check, timeout=60)

    def undefine(self, g: guests.Guest) -> None:
        self.virsh(g.driver, "destroy", g.name, check=False, timeout=60)
        self.virsh(g.driver, "undefine", g.name, check=False)

    def console(self, g: guests.Guest) -> Path:
        return self.paths.guests / g.name / "console.log"

    def host_dev(self, g: guests.Guest) -> str | None:
        """The host-side device libvirt made for the guest (<target dev>), if running."""
        out = self.virsh(g.driver, "domiflist", g.name, check=False)
        for line in out.stdout.splitlines():
            cols = line.split()
            if cols and g.mac.lower() in line.lower() and cols[0] != "-":
                return cols[0]
        return None

    def container_pid(self, g: guests.Guest) -> int:
        """The container's init (child of `libvirt_lxc --name NAME`)."""
        for ctl in procs.find_by_args("--name", g.name):
            if "libvirt_lxc" in procs.cmdline(ctl):
                kids = procs.children(ctl)
                if kids:
                    return kids[0]
        raise LabError(f"no running container {g.name}")

    def in_container(self, g: guests.Guest, cmd: list[str], **kw):
        return run(["nsenter", "-t", str(self.container_pid(g)), "-n", *cmd], **kw)

    def in_host(self, cmd: list[str], **kw):
        return run([*in_netns(self.topo.host), *cmd], **kw)

    def in_lan(self, cmd: list[str], **kw):
        return run([*in_netns(self.topo.lan), *cmd], **kw)

    def bridge_holds_uplink(self) -> bool:
        """Namespaces up and the uplink a port of the lab's br0 (made by `lab up`)?"""
        return self.topo.healthy() and self.topo.link_master(self.topo.host,
                                                             S.UPLINK) == S.BRIDGE

    def ping_from_x(self, ip: str, *, count: int = 1, wait: float = 1) -> bool:
        return self.in_lan(["ping", "-c", str(count), "-W", str(wait), "-n", ip],
                           check=False).returncode == 0

    def wait_console(self, g: guests.Guest, needle: str, timeout: float = 90) -> bool:
        log = self.console(g)
        return bool(wait_for(lambda: log.exists() and needle in log.read_text(errors="replace"),
                             timeout, 0.5))

    def hook_calls(self) -> list[str]:
        try:
            return [ln for ln in self.paths.hooklog.read_text().splitlines()
                    if ln.startswith("CALL ")]
        except OSError:
            return []

    def start_agent(self, python: str | None = None) -> int:
        return lab_agent.start(self.paths, python or sys.executable)

    def stop_agent(self) -> None:
        lab_agent.stop(self.paths)

    def agent_pid(self) -> int | None:
        return lab_agent.running(self.paths)

    def vz(self, python: str | None = None) -> VzCli:
        """`vzlibvirt` in the lab host, with the lab config and libvirt's environment."""
        return VzCli(self.paths.config, enter=in_netns(self.topo.host), base_env=LIBVIRT_ENV,
                     python=python or sys.executable)

    def bridge(self, *args: str, python: str | None = None, check: bool = True) -> Result:
        """`vzlibvirt bridge ARGS` in the lab host, with the lab config (its state dir keeps
        the bridge record): the lab makes br0 with the product, as a user would."""
        r = self.vz(python).run("bridge", *args, timeout=60)
        if check and r.rc != 0:
            raise LabError(f"vzlibvirt bridge {' '.join(args)} -> exit {r.rc}: "
                           f"{(r.stderr or r.text).strip()}")
        return r

    def _namespaces(self) -> tuple[str, ...]:
        """The namespaces whose processes are this lab's (the LAN's only when it owns it)."""
        return (self.topo.host, self.topo.lan) if self.owns_lan else (self.topo.host,)

    def restart_libvirtd(self, timeout: float = 90) -> None:
        daemon.restart(self.paths, timeout)


def _rmdir_tree(top: Path) -> None:
    """Remove an (empty) cgroup directory tree bottom-up; cgroupfs allows only rmdir."""
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces)")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None
               and not Path("/usr/sbin", t).exists() and not Path("/sbin", t).exists()]
    if missing:
        raise LabError("missing tools: " + ", ".join(missing) + " (run `make deps`)")
