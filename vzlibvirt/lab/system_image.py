"""The system VM's image: a Debian 12 root built once with mmdebstrap from this machine's
own apt sources and cached under the lab cache, keyed on the package list and the
customisation text (change either and the next `lab system up` rebuilds).

What the image holds is what a real Debian 12 libvirt host holds: systemd as PID 1,
libvirt-daemon-system with the LXC driver, Debian's cloud kernel, python3-venv, sshd for
the control channel, busybox for container roots, br0 over the uplink by systemd-networkd.
vzlibvirt itself is *not* in the image: the system tests install it as the README says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .sh import LabError, progress, run

IMAGE_VERSION = "3"  # bump when the build steps change in a way the texts below miss
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "systemd-container", "linux-image-cloud-amd64",
    "initramfs-tools", "kmod", "libvirt-daemon-system", "libvirt-daemon-driver-lxc",
    "libvirt-clients", "busybox-static", "python3-venv", "openssh-server", "iproute2",
    "iputils-ping", "procps", "nftables", "libnftables1", "dnsmasq-base", "iptables",
    "ca-certificates",
)
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
HOSTNAME = "vzsys"
UPLINK_MAC = "52:54:00:5e:00:50"  # the VM's NIC; networkd matches it, so its name is free
DISK_SIZE = "4G"

# Files written into the root after mmdebstrap: path -> text.
FILES: dict[str, str] = {
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    # A host with bridged guests: br0 holds the uplink (docs/bridged.md), set up at boot.
    "etc/systemd/network/10-br0.netdev": "[NetDev]\nName=br0\nKind=bridge\n",
    "etc/systemd/network/20-uplink.network":
        f"[Match]\nMACAddress={UPLINK_MAC}\n\n[Network]\nBridge=br0\n",
    # br0's addresses: make_disk fills @IP4@/@GW4@/@IP6@ in for each VM's disk.
    "etc/systemd/network/30-br0.network": (
        "[Match]\nName=br0\n\n[Network]\nAddress=@IP4@\nGateway=@GW4@\nAddress=@IP6@\n"
        "IPv6AcceptRA=no\nConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n"
        "LinkLocalAddressing=ipv6\n"
    ),
    # networkd would otherwise delete routes it did not make (vzlibvirt's guest routes)
    # whenever it (re)configures a link: see docs/user-guide.md.
    "etc/systemd/networkd.conf.d/50-vzlibvirt.conf":
        "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n",
    "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf": (
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear %I "
        "115200 vt220\n"
    ),
    "etc/ssh/sshd_config.d/vzlab.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    ),
    # journald on a 1-CPU TCG guest: keep it small and volatile-friendly
    "etc/systemd/journald.conf.d/vzlab.conf": "[Journal]\nSystemMaxUse=32M\n",
}
ENABLE = ("systemd-networkd.service", "ssh.service", "serial-getty@ttyS0.service")


@dataclass(frozen=True)
class SystemImage:
    """A built image: a root tree (turned into a disk per `up`), its boot files, the
    ssh key that logs into it."""

    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"


def cache_key() -> str:
    text = "\n".join([IMAGE_VERSION, *PACKAGES, *(f"{k}\n{v}" for k, v in sorted(FILES.items())),
                      *ENABLE, APT_SOURCES.read_text() if APT_SOURCES.exists() else ""])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_dir(cache: Path) -> Path:
    return cache / "system" / cache_key()


def cached(cache: Path) -> SystemImage | None:
    img = SystemImage(image_dir(cache))
    return img if (img.dir / "done").exists() else None


def build(cache: Path) -> SystemImage:
    """The cached image, built first when missing (takes no lab lock: nothing here touches
    the lab; the build happens in a temporary dir and is renamed into place)."""
    found = cached(cache)
    if found:
        return found
    if shutil.which("mmdebstrap") is None:
        raise LabError("mmdebstrap is missing (apt-get install mmdebstrap)")
    final = image_dir(cache)
    final.parent.mkdir(parents=True, exist_ok=True)
    progress(f"building the Debian 12 system image (mmdebstrap, once; cached in {final})")
    with tempfile.TemporaryDirectory(dir=final.parent, prefix="build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        with APT_SOURCES.open() as sources:
            proc = _mmdebstrap(root, sources)
        if proc.returncode != 0:
            raise LabError(f"mmdebstrap failed: {(proc.stderr or '')[-2000:]}")
        _customise(root, work)
        boot = sorted(root.glob("boot/vmlinuz-*"))
        rd = sorted(root.glob("boot/initrd.img-*"))
        if not boot or not rd:
            raise LabError("the system image has no kernel or initrd in /boot")
        shutil.copy2(boot[-1], work / "vmlinuz")
        shutil.copy2(rd[-1], work / "initrd.img")
        (work / "done").write_text(cache_key() + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
        work.mkdir()  # TemporaryDirectory removes its (now empty) path
    for old in final.parent.iterdir():  # older keys: superseded builds
        if old != final and not old.name.startswith("build-"):
            shutil.rmtree(old, ignore_errors=True)
    return SystemImage(final)


def _mmdebstrap(root: Path, sources):
    import subprocess

    cmd = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
           "--aptopt=Acquire::Check-Valid-Until \"false\"",
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           "bookworm", str(root), "-"]
    try:
        return subprocess.run(cmd, stdin=sources, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        raise LabError("mmdebstrap did not finish in 30 minutes") from exc


def _customise(root: Path, work: Path) -> None:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vzlibvirt-lab-system",
         "-f", str(work / "id_ed25519")])
    ssh = root / "root" / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(work / "id_ed25519.pub", ssh / "authorized_keys")
    (ssh / "authorized_keys").chmod(0o600)
    run(["systemctl", f"--root={root}", "enable", *ENABLE])
    run(["chroot", str(root), "passwd", "-d", "root"])
    # apt inside the VM reaches nothing; users copy wheels in (README)
    (root / "etc" / "machine-id").write_text("")


def make_disk(img: SystemImage, dest: Path, ip4: str, gw4: str, ip6: str) -> None:
    """A fresh writable disk for one VM from the cached root (mkfs.ext4 -d: no loop mount,
    ~2 s), with this lab's addresses filled into br0's networkd file."""
    net = img.root / "etc/systemd/network/30-br0.network"
    template = FILES["etc/systemd/network/30-br0.network"]
    dest.unlink(missing_ok=True)
    net.write_text(template.replace("@IP4@", ip4).replace("@GW4@", gw4).replace("@IP6@", ip6))
    try:
        run(["mkfs.ext4", "-q", "-F", "-L", "vzsys", "-d", str(img.root), str(dest), DISK_SIZE],
            timeout=600)
    finally:
        net.write_text(template)
