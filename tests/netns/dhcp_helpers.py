"""DHCP test helpers: busybox udhcpc in a guest namespace, a supervised dnsmasq in the
host namespace, and a teardown that ends every dnsmasq of the test, also on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from vzlibvirt.lab.resident import Resident
from vzlibvirt.lab.sh import wait_for as _wait_for
from vzlibvirt.lab.topology import Guest, Topology

BUSYBOX = "/bin/busybox"

# udhcpc's event script: record what the server handed out, then configure the guest the
# way a cloud image's client does: the address with its mask, option 121 routes
# (falling back to the router option).
UDHCPC_SCRIPT = r"""#!/bin/busybox sh
bb=/bin/busybox
case "$1" in
  deconfig)
    $bb ip addr flush dev "$interface"
    $bb ip link set "$interface" up ;;
  bound|renew)
    echo "ip=$ip mask=$mask subnet=$subnet router=$router dns=$dns lease=$lease" > "$VZT_OUT"
    echo "staticroutes=$staticroutes" >> "$VZT_OUT"
    $bb ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        if [ "$2" = 0.0.0.0 ]; then $bb ip route add "$1" dev "$interface" scope link
        else $bb ip route add "$1" via "$2" dev "$interface"; fi
        shift 2
      done
    elif [ -n "$router" ]; then
      $bb ip route add "$router" dev "$interface" scope link
      $bb ip route add default via "$router" dev "$interface"
    fi ;;
esac
exit 0
"""


def udhcpc(topo: Topology, g: Guest, workdir: Path, tries: int = 3) -> dict[str, str] | None:
    """One DHCP exchange from the guest (option 121 requested, as cloud images do); what
    it was given, or None when nobody answered."""
    script = workdir / "udhcpc.sh"
    if not script.exists():
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
    out = workdir / f"lease-{g.name}"
    out.unlink(missing_ok=True)
    r = subprocess.run(
        ["ip", "netns", "exec", g.ns, "env", f"VZT_OUT={out}", BUSYBOX, "udhcpc", "-i",
         g.guest_dev, "-s", str(script), "-q", "-n", "-f", "-t", str(tries), "-T", "1",
         "-A", "1", "-O", "staticroutes"],
        capture_output=True, timeout=30 + tries * 5)
    if r.returncode != 0 or not out.exists():
        return None
    got: dict[str, str] = {}
    for line in out.read_text().splitlines():
        for part in (line.split(" ") if not line.startswith("staticroutes=") else [line]):
            key, _, value = part.partition("=")
            got[key] = value
    return got


def dnsmasq_pids(root: Path) -> list[int]:
    """Every dnsmasq whose command line names a file under `root` (this test's)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and cmd.split(b"\0")[0].endswith(b"dnsmasq") \
                and str(root).encode() in cmd:
            pids.append(int(p))
    return pids


def kill_dnsmasqs(root: Path) -> None:
    for pid in dnsmasq_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(pred, timeout: float = 20, interval: float = 0.05):
    return _wait_for(pred, timeout, interval)


class Supervisor(Resident):
    """`vzlibvirt dhcp` or `vzlibvirt agent` in the host namespace, and its dnsmasq."""

    dhcp_dir: Path

    @classmethod
    def launch(cls, topo: Topology, vz, command: str) -> Supervisor:
        r = cls.start(vz, command, log=vz.root / f"{command}.log", ns=topo.host)
        r.dhcp_dir = vz.state / "dhcp"
        return r

    def dnsmasq_pid(self, timeout: float = 20) -> int:
        """The running dnsmasq's pid, once its pid file names a live dnsmasq of ours."""
        from vzlibvirt.dhcp import dnsmasq_pid

        pid = wait_for(lambda: dnsmasq_pid(self.dhcp_dir), timeout)
        assert pid, f"no dnsmasq came up:\n{self.log.read_text()}"
        return pid
