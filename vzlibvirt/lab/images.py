"""Guest images, built by the project from Debian packages and cached by version under
the lab cache dir, so reruns (and CI reruns on the same machine) take no time:

- container rootfs: a copy of the static busybox plus empty mount-point dirs;
- VM: Debian's cloud kernel (the exact package `linux-image-cloud-amd64` depends on,
  fetched with `apt-get download`, unpacked with `dpkg-deb -x`) and a busybox initramfs
  (`busybox cpio -o -H newc`) with the virtio_net modules and an init that takes its
  IP from the kernel command line.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .sh import LabError, progress, run

BUSYBOX = Path("/bin/busybox")
# Load order matters only for speed: init retries until all are in.
VIRTIO_MODULES = ("virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                  "virtio_pci", "failover", "net_failover", "virtio_net")
ROOTFS_DIRS = ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run")

# The VM's /init. Kernel cmdline: vzip=A[,B...] (v4 and v6; /32 and /128 unless an
# address carries its prefix, as a bridged VM's LAN /24 does), vzgw=169.254.0.1,
# vzgw6=fe80::1. Prints VZLAB-READY once configured and, every 2 s, whether the host
# gateway answers (VZLAB-GW-OK / VZLAB-GW-FAIL): that is how tests see "VM pings GW".
# With vz.dhcp=1 instead of vzip, only busybox udhcpc configures eth0 (as a cloud image
# would): it prints VZLAB-DHCP with what it got, or VZLAB-DHCP-RETRY per failed round.
VM_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
  left=0
  for m in @MODULES@; do
    grep -q "^$m " /proc/modules || insmod /lib/modules/$m.ko 2>/dev/null || left=1
  done
  [ $left = 0 ] && break
done
for w in $(cat /proc/cmdline); do
  case $w in vzip=*) IPS=${w#vzip=};; vzgw=*) GW=${w#vzgw=};; vzgw6=*) GW6=${w#vzgw6=};;
    vz.dhcp=1) DHCP=1;; esac
done
GW=${GW:-169.254.0.1}; GW6=${GW6:-fe80::1}
# busybox `ip` has no `nodad` (it refuses the whole command): DAD off by sysctl instead,
# so the guest's IPv6 addresses answer at once (a migrated guest must not wait 1 s)
for c in all default eth0; do echo 0 > /proc/sys/net/ipv6/conf/$c/accept_dad; done
ip link set lo up
ip link set eth0 up
if [ "$DHCP" = 1 ]; then
  cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    echo "VZLAB-DHCP ip=$ip mask=$mask router=$router staticroutes=$staticroutes"
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface" scope link
      else ip route add "$1" via "$2" dev "$interface"; fi
      shift 2
    done ;;
esac
EOS
  chmod +x /tmp/dhcp.sh
  until udhcpc -i eth0 -s /tmp/dhcp.sh -q -n -t 4 -T 1 -A 1 -O staticroutes
  do echo VZLAB-DHCP-RETRY; done
  IPS=$(ip -o -4 addr show dev eth0 | sed 's/.* inet \([^/]*\).*/\1/')
else
  for a in $(echo "$IPS" | tr , ' '); do
    case $a in
      *:*/*) ip -6 addr add $a dev eth0 ;;
      *:*) ip -6 addr add $a/128 dev eth0 ;;
      */*) ip addr add $a dev eth0 ;;
      *) ip addr add $a/32 dev eth0 ;;
    esac
  done
  ip route add $GW dev eth0 scope link
  ip route add default via $GW dev eth0
  ip -6 route add default via $GW6 dev eth0 2>/dev/null
fi
echo "VZLAB-READY ips=$IPS"
# A hot-plugged second NIC (vzip1=A[,B]): configured as eth1 the moment it appears, with
# its own table so replies leave through the device the host routes the address to.
for w in $(cat /proc/cmdline); do case $w in vzip1=*) IPS1=${w#vzip1=};; esac; done
if [ -n "$IPS1" ]; then
  ( while :; do
      if [ -e /sys/class/net/eth1 ] && ! ip -o addr show dev eth1 | grep -q inet; then
        ip link set eth1 up
        for a in $(echo "$IPS1" | tr , ' '); do
          ip addr add $a/32 dev eth1; ip rule add from $a table 101
        done
        ip route add $GW dev eth1 scope link table 101
        ip route add default via $GW dev eth1 table 101
        echo "VZLAB-ETH1 $IPS1"
      fi
      sleep 0.1
    done ) &
fi
n=0
while :; do
  n=$((n+1))
  if ping -c 1 -W 1 $GW >/dev/null 2>&1; then r=OK; else r=FAIL; fi
  echo "VZLAB-GW-$r $n"
  sleep 2
done
"""


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initrd: Path
    version: str


def container_rootfs(dest: Path) -> None:
    """A minimal rootfs for an LXC guest whose init is /bin/busybox."""
    for d in ROOTFS_DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    (dest / "bin" / "sh").unlink(missing_ok=True)
    (dest / "bin" / "sh").symlink_to("busybox")


def _apt_kernel_package() -> str:
    """The exact linux-image-*-cloud-amd64 package the metapackage depends on."""
    for attempt in range(2):
        out = run(["apt-cache", "depends", "linux-image-cloud-amd64"], check=False)
        m = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", out.stdout)
        if m:
            return m.group(1)
        if attempt == 0:
            progress("apt lists lack linux-image-cloud-amd64: apt-get update")
            run(["apt-get", "update", "-qq"], timeout=600)
    raise LabError("cannot resolve linux-image-cloud-amd64 through apt-cache")


def _cached_kernels(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "kernel").glob("*") if (p / "done").exists())


def kernel(cache: Path) -> tuple[Path, Path, str]:
    """(vmlinuz, modules dir with the virtio .ko files, version), fetched once per version."""
    try:
        pkg = _apt_kernel_package()
    except LabError:
        cached = _cached_kernels(cache)
        if not cached:
            raise
        pkg = cached[-1].name  # offline: the newest cached kernel will do
    kdir = cache / "kernel" / pkg
    if not (kdir / "done").exists():
        progress(f"fetching guest kernel {pkg} (apt-get download, ~30 MB, once)")
        shutil.rmtree(kdir, ignore_errors=True)
        kdir.mkdir(parents=True)
        with tempfile.TemporaryDirectory(dir=kdir.parent) as tmp:
            run(["apt-get", "download", pkg], timeout=900, cwd=tmp)
            deb = next(Path(tmp).glob("*.deb"))
            run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], timeout=300)
            root = Path(tmp) / "x"
            vmlinuz = next(root.glob("boot/vmlinuz-*"))
            shutil.copy2(vmlinuz, kdir / "vmlinuz")
            mods = kdir / "modules"
            mods.mkdir()
            for name in VIRTIO_MODULES:
                _copy_module(root, name, mods)
            (kdir / "version").write_text(vmlinuz.name.removeprefix("vmlinuz-"))
        (kdir / "done").write_text("")
    return kdir / "vmlinuz", kdir / "modules", pkg


def _copy_module(root: Path, name: str, dest: Path) -> None:
    """Find NAME.ko (maybe .ko.xz) in the unpacked package, store it uncompressed."""
    hits = [p for p in root.glob("lib/modules/*/kernel/**/*.ko*")
            if p.name.split(".ko")[0].replace("-", "_") == name]
    if not hits:
        raise LabError(f"kernel package has no module {name}")
    src = hits[0]
    data = src.read_bytes()
    if src.name.endswith(".xz"):
        data = lzma.decompress(data)
    (dest / f"{name}.ko").write_bytes(data)


def vm_image(cache: Path) -> VmImage:
    """Kernel plus initramfs; the initramfs is keyed by kernel, busybox and init text."""
    vmlinuz, mods, pkg = kernel(cache)
    init = VM_INIT.replace("@MODULES@", " ".join(VIRTIO_MODULES))
    key = hashlib.sha256(
        (pkg + init).encode() + BUSYBOX.read_bytes()
    ).hexdigest()[:16]
    initrd = cache / "initrd" / f"initrd-{key}.cpio"
    if not initrd.exists():
        progress("building the VM initramfs (busybox cpio)")
        initrd.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=initrd.parent) as tmp:
            root = Path(tmp) / "root"
            container_rootfs(root)
            (root / "lib" / "modules").mkdir(parents=True)
            for ko in mods.glob("*.ko"):
                shutil.copy2(ko, root / "lib" / "modules" / ko.name)
            (root / "init").write_text(init)
            (root / "init").chmod(0o755)
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
            out = Path(tmp) / "initrd.cpio"
            run(["sh", "-c", f'cd "{root}" && busybox cpio -o -H newc > "{out}"'],
                input="\n".join(files) + "\n", timeout=120)
            os.replace(out, initrd)
    return VmImage(vmlinuz, initrd, pkg)
