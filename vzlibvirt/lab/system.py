"""`vzlibvirt lab system`: a Debian 12 host with systemd, libvirtd and (once installed as
the README says) vzlibvirt, running as a VM of the lab's libvirtd, bridged on the lab's
br0 so that Computer X shares its LAN. Control channel: ssh from the lab host namespace
with a key made at image build (see docs/lab.md, "The system VM").
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from . import settings as S
from . import system_image
from .lab import Lab
from .runner import in_netns
from .sh import LabError, progress, run

NAME = "vzsys"
TAP = "vzsys0"  # the VM's uplink as the lab host sees it (virsh domif-setlink target)
IP4 = "198.51.100.50"
IP6 = "2001:db8:100::50"
MEMORY_MIB = 1536
SSH_OPTS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6")


def kvm_wanted() -> bool:
    """KVM only when asked (VZLAB_KVM=1) and /dev/kvm exists; TCG otherwise (lab.md)."""
    return os.environ.get("VZLAB_KVM") == "1" and Path("/dev/kvm").exists()


def domain_xml(img: system_image.SystemImage, disk: Path, console: Path, *, kvm: bool) -> str:
    """No vz metadata and a type='bridge' NIC: to the lab's own hooks this is a foreign
    guest, which they must leave alone (issue 13, item 3)."""
    q = quoteattr
    accel = ("<cpu mode='host-passthrough'/>" if kvm else
             "<features><acpi/><tcg><tb-cache unit='MiB'>256</tb-cache></tcg></features>")
    if kvm:
        accel = "<features><acpi/></features>" + accel
    return f"""<domain type={q('kvm' if kvm else 'qemu')}>
  <name>{NAME}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{img.kernel}</kernel>
    <initrd>{img.initrd}</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 quiet systemd.show_status=false</cmdline>
  </os>
  {accel}
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='unsafe'/>
      <source file={q(str(disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <source bridge={q(S.BRIDGE)}/>
      <mac address={q(system_image.UPLINK_MAC)}/>
      <target dev={q(TAP)}/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path={q(str(console))}/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@dataclass
class SystemVM:
    lab: Lab

    @property
    def dir(self) -> Path:
        return self.lab.paths.root / "system"

    @property
    def disk(self) -> Path:
        return self.dir / "disk.img"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    def image(self) -> system_image.SystemImage:
        return system_image.build(self.lab.paths.cache)

    # ---------- life cycle ----------
    def running(self) -> bool:
        if not self.lab.is_up():
            return False
        out = self.lab.virsh("qemu", "domstate", NAME, check=False)
        return out.returncode == 0 and out.stdout.strip() == "running"

    def up(self, *, fresh: bool = False, timeout: float = 300) -> float:
        """Boot the VM (a fresh disk from the cached image) on the lab; idempotent unless
        FRESH. Returns the seconds from `virsh start` to ssh answering."""
        img = self.image()  # before the lab: a first build takes minutes, the lab none
        self.lab.up()
        if self.running() and not fresh:
            self.wait_ssh(timeout)
            return 0.0
        self.destroy()
        self.dir.mkdir(parents=True, exist_ok=True)
        progress(f"system VM {NAME}: fresh disk from the cached image")
        system_image.make_disk(img, self.disk, f"{IP4}/24", S.LAN_GATEWAY4, f"{IP6}/64")
        self.console.unlink(missing_ok=True)
        kvm = kvm_wanted()
        xml = self.dir / "domain.xml"
        xml.write_text(domain_xml(img, self.disk, self.console, kvm=kvm))
        self.lab.virsh("qemu", "define", str(xml))
        t0 = time.monotonic()
        result = self.lab.virsh("qemu", "start", NAME, check=False, timeout=180)
        if result.returncode != 0 and kvm:
            progress("KVM start failed, falling back to TCG")
            xml.write_text(domain_xml(img, self.disk, self.console, kvm=False))
            self.lab.virsh("qemu", "define", str(xml))
            result = self.lab.virsh("qemu", "start", NAME, check=False, timeout=180)
        if result.returncode != 0:
            raise LabError(f"virsh start {NAME}: {result.stderr.strip()}")
        progress(f"system VM {NAME} booting ({'KVM' if kvm else 'TCG'}); waiting for ssh")
        self.wait_ssh(timeout)
        took = time.monotonic() - t0
        progress(f"system VM {NAME} up in {took:.1f}s: `vzlibvirt lab system ssh`")
        return took

    def destroy(self) -> None:
        if self.lab.is_up():
            self.lab.virsh("qemu", "destroy", NAME, check=False, timeout=60)
            self.lab.virsh("qemu", "undefine", NAME, check=False)

    def down(self) -> None:
        self.destroy()
        if self.dir.exists():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()

    # ---------- control channel ----------
    def ssh_argv(self, *remote: str, tty: bool = False) -> list[str]:
        key = str(self.image().key)
        return [*in_netns(S.HOST_NETNS), "ssh", "-i", key, *SSH_OPTS, *(["-t"] if tty else []),
                                       f"root@{IP4}", *remote]

    def sh(self, script: str, *, check: bool = True, timeout: float = 300):
        """Run SCRIPT with /bin/sh -e as root in the VM; raises LabError on failure."""
        result = run(self.ssh_argv("sh -ec " + shlex.quote(script)), check=False,
                     timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(f"in {NAME}: {script.strip()[:200]!r} -> exit {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")
        return result

    def copy_in(self, sources: list[Path], dest: str, timeout: float = 300) -> None:
        key = str(self.image().key)
        self.sh(f"mkdir -p {shlex.quote(dest)}")
        run([*in_netns(S.HOST_NETNS), "scp", "-q", "-i", key, *SSH_OPTS, *map(str, sources),
             f"root@{IP4}:{dest}/"], timeout=timeout)

    def wait_ssh(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if run(self.ssh_argv("true"), check=False, timeout=20).returncode == 0:
                    return
            except LabError:
                pass
            time.sleep(1)
        tail = self.console.read_text(errors="replace")[-2000:] if self.console.exists() \
            else ""
        raise LabError(f"system VM {NAME}: no ssh after {timeout}s; console:\n{tail}")

    def console_count(self, needle: str) -> int:
        """How often NEEDLE is in the serial console log so far (reboots, boots)."""
        try:
            return self.console.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def interactive(self) -> int:
        """A root shell (replaces nothing: returns ssh's exit status)."""
        return subprocess.call(self.ssh_argv(tty=True))

    def setlink(self, state: str) -> None:
        """The VM's uplink carrier up/down from outside, as a pulled cable."""
        self.lab.virsh("qemu", "domif-setlink", NAME, TAP, state)
