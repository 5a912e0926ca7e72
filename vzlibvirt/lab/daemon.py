"""The lab's private libvirtd: in netns vzlab-host and in a private mount namespace in which
lab directories are bind-mounted over libvirt's own (see docs/lab.md for why each step)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import procs
from . import settings as S
from .settings import HostSpec, LabPaths
from .sh import LabError, run

QEMU_CONF = """\
# vzlibvirt lab: no libvirt-qemu user on this machine; run guests as root, no sVirt.
user = "root"
group = "root"
security_driver = "none"
"""
NWFILTER_TEMPLATES = Path("/usr/share/libvirt/nwfilter")
# A host of the two-host lab: both daemons number domains from 1, so with cgroups on, a
# migration's source and incoming VM share one cgroup path and stop is slow and noisy.
QEMU_CONF_MIGRATING = 'cgroup_controllers = [ ]\n'
LXC_CONF = 'security_driver = "none"\n'
LIBVIRTD_CONF = """\
# vzlibvirt lab: only the unix socket, no TCP; logs inside the lab dir.
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
# A host of the two-host lab takes migrations over TCP on its LAN address only (the lab's
# namespaces), without TLS or authentication, and has a host UUID of its own: libvirt
# refuses a migration between hosts whose UUIDs match.
LIBVIRTD_CONF_MIGRATING = """\
# and, for migrations inside the two-host lab: TCP on the LAN address only.
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
listen_addr = "{address}"
host_uuid = "{host_uuid}"
"""

# Runs as root in the lab netns after `unshare -m --propagation private` (and -u for a
# host of the two-host lab); $1 = lab dir, $2 = hostname or "", $3 = the exec'd starter.
LAUNCH = r"""
set -eu
L="$1"
if [ -n "$2" ]; then
  hostname "$2"
  mount --bind "$L/etc-hosts" /etc/hosts
fi
aside="$L/mnt/cgroup"
mount --rbind /sys/fs/cgroup "$aside"
mount -t sysfs sysfs /sys
mount --rbind "$aside" /sys/fs/cgroup
umount -R "$aside"
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
mount --bind "$L/etc" /etc/libvirt
mount --bind "$L/hooks" /etc/libvirt/hooks
mount --bind "$L/run" /run/libvirt
mount --bind "$L/lib" /var/lib/libvirt
mount --bind "$L/log" /var/log/libvirt
mount --bind "$L/cache" /var/cache/libvirt
for f in passwd group; do
  if [ -f "$L/etc-$f" ]; then mount --bind "$L/etc-$f" "/etc/$f"; fi
done
shift 2
exec "$@"
"""

# Starts (or restarts) both daemons; runs inside the private mount namespace.
START_DAEMONS = r"""#!/bin/sh
set -eu
# Daemons must not hold the caller's pipes; their start-up errors land in the lab log dir.
exec </dev/null >>/var/log/libvirt/daemons.out 2>&1
if ! { [ -f /run/libvirt/virtlogd.pid ] && kill -0 "$(cat /run/libvirt/virtlogd.pid)"; } \
    2>/dev/null; then
  virtlogd -d -p /run/libvirt/virtlogd.pid
fi
# The environment a real init gives libvirtd, so hooks see libvirt's minimal PATH.
exec env -i PATH=/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
    setsid libvirtd -d -p /run/libvirt/libvirtd.pid@LISTEN@
"""


def write_configs(paths: LabPaths, spec: HostSpec = S.HOST,
                  peers: Sequence[HostSpec] = ()) -> None:
    """libvirt's configs in the lab's etc; PEERS: every host of the two-host lab, whose
    names go into this host's private /etc/hosts."""
    qemu, libvirtd = QEMU_CONF, LIBVIRTD_CONF
    if spec.migrates:
        qemu += QEMU_CONF_MIGRATING
        libvirtd += LIBVIRTD_CONF_MIGRATING.format(address=spec.address4,
                                                   host_uuid=spec.host_uuid)
        hosts = "127.0.0.1 localhost\n" + "".join(f"{p.address4} {p.hostname}\n"
                                                  for p in peers)
        (paths.root / "etc-hosts").write_text(hosts)
    (paths.etc / "qemu.conf").write_text(qemu)
    (paths.etc / "lxc.conf").write_text(LXC_CONF)
    (paths.etc / "libvirtd.conf").write_text(libvirtd)
    script = paths.root / "start-daemons"
    script.write_text(START_DAEMONS.replace("@LISTEN@", " --listen" if spec.migrates else ""))
    script.chmod(0o755)
    (paths.root / "mnt" / "cgroup").mkdir(parents=True, exist_ok=True)
    (paths.etc / "hooks").mkdir(exist_ok=True)  # mount point for the lab hooks dir
    write_account_overlays(paths)
    copy_nwfilters(paths)


def copy_nwfilters(paths: LabPaths) -> None:
    """libvirt's own filters (clean-traffic, ...) for its nwfilter driver, which the lab's
    libvirtd loads like any other: Debian ships them as templates in NWFILTER_TEMPLATES
    (package libvirt-daemon-config-nwfilter) that its postinst copies to /etc/libvirt;
    the lab's /etc/libvirt is its own dir, so it copies them there (bench/ compares our
    port security with them)."""
    dest = paths.etc / "nwfilter"
    dest.mkdir(exist_ok=True)
    for xml in sorted(NWFILTER_TEMPLATES.glob("*.xml")):
        shutil.copy2(xml, dest / xml.name)


def write_account_overlays(paths: LabPaths) -> None:
    """libvirt 9.0 resolves its build-time QEMU user `libvirt-qemu` before it reads
    qemu.conf, so the QEMU driver fails on hosts without that user. Rather than add a user
    to the machine, the lab bind-mounts copies of /etc/passwd and /etc/group that have it,
    inside libvirtd's private mount namespace only."""
    for name, line in (
        ("passwd", "libvirt-qemu:x:64055:64055:vzlibvirt lab:/var/lib/libvirt:/usr/sbin/nologin"),
        ("group", "libvirt-qemu:x:64055:"),
    ):
        text = Path("/etc", name).read_text()
        if not any(ln.startswith("libvirt-qemu:") for ln in text.splitlines()):
            (paths.root / f"etc-{name}").write_text(text.rstrip("\n") + "\n" + line + "\n")


def missing_mountpoints() -> list[str]:
    """Host directories libvirt expects but this machine lacks; `up` creates them as empty
    mount points and `down` removes them again (hooks lives inside the lab's etc)."""
    return [p for k, p in S.LIBVIRT_DIRS.items() if k not in ("hooks",) and not Path(p).exists()]


def pidfile(paths: LabPaths, name: str) -> Path:
    return paths.run / f"{name}.pid"


def read_pid(paths: LabPaths, name: str) -> int | None:
    try:
        pid = int(pidfile(paths, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def start(paths: LabPaths, spec: HostSpec = S.HOST) -> None:
    """First start: new private mount namespace (and UTS namespace for a host of the
    two-host lab, whose daemons also run under a child subreaper), then the daemons."""
    starter = [str(paths.root / "start-daemons")]
    if spec.migrates:
        starter = [sys.executable, "-S", str(Path(__file__).with_name("subreaper.py")),
                   *starter, str(paths.lab("log") / "subreaper.log")]
    run(
        ["nsenter", f"--net=/run/netns/{spec.netns}", "unshare", "-m",
         *(["-u"] if spec.hostname else []), "--propagation", "private", "sh", "-c", LAUNCH,
         "launch", str(paths.root), spec.hostname, *starter],
        timeout=60,
    )
    wait_ready(paths)


def restart(paths: LabPaths, timeout: float = 90) -> None:
    """Kill libvirtd only and start it again in the same namespaces (guests keep running,
    libvirt reconnects and calls the hooks' `reconnect`); TIMEOUT for it to answer (with
    many nwfilter bindings libvirt re-applies them all first: minutes)."""
    anchor = read_pid(paths, "virtlogd")
    if anchor is None:
        raise LabError("virtlogd is not running: the lab is down, cannot restart libvirtd")
    stop_libvirtd(paths)
    start_daemons(paths, anchor, timeout)


def start_daemons(paths: LabPaths, anchor: int, timeout: float = 90) -> None:
    """Start whichever daemon is not running, in the lab's namespaces (those of ANCHOR,
    virtlogd's pid), and wait until libvirtd answers."""
    run(["nsenter", "-t", str(anchor), "-m", "-n", "-u", str(paths.root / "start-daemons")],
        timeout=60)
    wait_ready(paths, timeout)


def stop_libvirtd(paths: LabPaths, timeout: float = 20) -> None:
    pid = read_pid(paths, "libvirtd")
    if pid is None:
        return
    procs.kill_all({pid}, timeout)
    pidfile(paths, "libvirtd").unlink(missing_ok=True)


def wait_ready(paths: LabPaths, timeout: float = 90) -> None:
    """Until both drivers answer on the lab socket."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answers = [run(["virsh", "-c", paths.uri(d), "version"], check=False, timeout=15)
                       for d in ("qemu", "lxc")]
        except LabError as exc:  # a virsh that hangs while libvirtd starts: try again
            last = str(exc)
            continue
        if all(a.returncode == 0 for a in answers):
            return
        last = " / ".join(a.stderr.strip() for a in answers if a.returncode)
        time.sleep(0.2)
    tail = ""
    for log in (paths.lab("log") / "daemons.out", paths.lab("log") / "libvirtd.log",
                paths.agent_log, paths.root / "hook-calls.log"):
        name = log.name
        if log.exists():
            tail += f"--- {name}\n" + log.read_text()[-1500:]
    raise LabError(f"libvirtd did not come up in {timeout}s: {last}\n{tail}")


def virsh(paths: LabPaths, driver: str, *args: str, check: bool = True, timeout: float = 120):
    """virsh against the lab daemon, DRIVER 'qemu' or 'lxc'."""
    return run(["virsh", "-q", "-c", paths.uri(driver), *args], check=check, timeout=timeout)
