"""The docs' recipe for a routed VM, for real: Debian's virt-install (virtinst) makes the
VM with a plain `type=ethernet` interface, `vzlibvirt set --ipadd` makes it routed, live
and persistent."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import require
from tests.e2e.helpers import host_routes, proxies, wait_for
from tests.e2e.test_live_changes import vz
from vzlibvirt.contract import GATEWAY4
from vzlibvirt.lab.settings import NEIGH_DEV

NAME, MAC, IP = "vivm", "52:54:00:bb:00:71", "198.51.100.171"


@pytest.fixture
def cleanup(lab):
    yield
    lab.virsh("qemu", "destroy", NAME, check=False)
    lab.virsh("qemu", "undefine", NAME, check=False)


def test_virt_install_then_set(lab, cleanup):
    require(shutil.which("virt-install") is not None, "virt-install (virtinst) missing")
    rec = lab.record()
    gdir = lab.paths.guests / NAME
    gdir.mkdir(parents=True, exist_ok=True)
    console = gdir / "console.log"
    args = f'console=ttyS0 quiet panic=-1 vzip={IP} vzgw={GATEWAY4}'
    r = subprocess.run([
        "virt-install", "--connect", lab.paths.uri("qemu"), "--name", NAME,
        "--virt-type", "qemu", "--machine", "pc", "--memory", "256", "--vcpus", "1",
        "--osinfo", "detect=on,require=off",
        "--boot", f'kernel={rec.vm_kernel},initrd={rec.vm_initrd},kernel_args="{args}"',
        "--network", f"type=ethernet,mac={MAC},model=virtio",
        "--disk", "none", "--graphics", "none", "--serial", f"file,path={console}",
        "--install", "no_install=yes", "--noautoconsole",
    ], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    xml = lab.virsh("qemu", "dumpxml", NAME).stdout
    assert "<interface type='ethernet'>" in xml and "xmlns/network" not in xml
    assert wait_for(lambda: console.exists() and "VZLAB-READY" in console.read_text(), 120)
    assert IP not in host_routes(lab)  # not ours yet: libvirt left the tap alone

    r = vz(lab, "set", NAME, "--ipadd", IP, "--connect", lab.paths.uri("qemu"))
    assert r.rc == 0, r.stderr
    dev = host_routes(lab).get(IP)
    assert dev and dev.startswith("vnet") and (IP, NEIGH_DEV) in proxies(lab)
    assert wait_for(lambda: lab.ping_from_x(IP), 10), "the virt-installed VM is unreachable"

    # persistent: a cold restart is routed by the hooks alone
    lab.virsh("qemu", "destroy", NAME)
    assert IP not in host_routes(lab)
    console.unlink()
    lab.virsh("qemu", "start", NAME)
    assert wait_for(lambda: lab.ping_from_x(IP), 120), "not routed after a restart"
