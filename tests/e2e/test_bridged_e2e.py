"""Seed 5.2.1.2 / 5.2.2.1 on the real libvirtd: bridged containers and VMs on br0.

The guests use the lab's br0, which `lab up` makes over the uplink with `vzlibvirt bridge
create` (and which the routed guests' proxy entries live on). Guests here are bridged
only, with filters the demo's seed guests do not use; their XML is written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import wait_for
from vzlibvirt.contract import XMLNS, domains_dir
from vzlibvirt.lab import images
from vzlibvirt.lab import settings as S

REPO = Path(__file__).resolve().parents[2]
CT_IP = "198.51.100.111"
CT2_IP = "198.51.100.112"


def vz(lab, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PYTHONPATH": str(REPO),
           "VZLIBVIRT_CONFIG": str(lab.paths.config)}
    return subprocess.run(["ip", "netns", "exec", S.HOST_NETNS, sys.executable, "-m",
                           "vzlibvirt", *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.fixture
def br0(lab):
    """The lab, whose br0 holds the uplink; creating it again is a no-op."""
    r = vz(lab, "bridge", "create", S.BRIDGE, "--uplink", S.UPLINK)
    assert r.returncode == 0, r.stderr
    assert "already exists with uplink" in r.stdout + r.stderr, r.stdout + r.stderr
    return lab


@pytest.fixture
def domains(br0):
    """Define and start domain XMLs; all are destroyed and undefined afterwards."""
    lab = br0
    made: list[tuple[str, str]] = []

    def start(driver: str, name: str, xml: str) -> None:
        path = lab.paths.guests / name / "domain.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(xml)
        lab.virsh(driver, "destroy", name, check=False)
        lab.virsh(driver, "undefine", name, check=False)
        lab.virsh(driver, "define", str(path))
        made.append((driver, name))
        r = lab.virsh(driver, "start", name, check=False, timeout=180)
        assert r.returncode == 0, r.stderr

    yield start
    for driver, name in reversed(made):
        lab.virsh(driver, "destroy", name, check=False, timeout=60)
        lab.virsh(driver, "undefine", name, check=False)


def ct_xml(lab, name: str, mac: str, ip: str, filt: str = "none") -> str:
    rootfs = lab.paths.guests / name / "rootfs"
    if not rootfs.exists():
        images.container_rootfs(rootfs)
    return f"""<domain type='lxc'>
  <name>{name}</name>
  <metadata><vz:network xmlns:vz="{XMLNS}">
    <vz:interface mac="{mac}" mode="bridged" bridge="br0" filter="{filt}"/>
  </vz:network></metadata>
  <memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/busybox</init>
    <initarg>sh</initarg><initarg>-c</initarg>
    <initarg>while :; do /bin/busybox sleep 3600; done</initarg></os>
  <devices>
    <emulator>/usr/lib/libvirt/libvirt_lxc</emulator>
    <filesystem type='mount'><source dir='{rootfs}'/><target dir='/'/></filesystem>
    <interface type='ethernet'>
      <mac address='{mac}'/>
      <guest dev='netif1'/>
      <ip address='{ip}' family='ipv4' prefix='24'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
"""


def vm_xml(lab, name: str, mac: str) -> str:
    rec = lab.record()
    console = lab.paths.guests / name / "console.log"
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <metadata><vz:network xmlns:vz="{XMLNS}">
    <vz:interface mac="{mac}" filter="mac"/>
  </vz:network></metadata>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{rec.vm_kernel}</kernel><initrd>{rec.vm_initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 vz.dhcp=1</cmdline></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <source bridge='br0'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def x_neighbour_mac(lab, ip: str) -> str | None:
    out = json.loads(lab.in_lan(["ip", "-j", "neigh", "show", ip]).stdout or "[]")
    return out[0].get("lladdr") if out else None


def nft_ports(lab) -> int:
    r = lab.in_host(["nft", "-j", "list", "map", "bridge", "vzlibvirt", "ports"], check=False)
    if r.returncode != 0:
        return 0
    return len(json.loads(r.stdout)["nftables"][1]["map"].get("elem", []))


def udp_seen(lab, pid: int, send_from_x: str) -> bool:
    """Does a UDP broadcast from Computer X reach a listener inside the container?"""
    listen = ("import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
              "s.bind(('0.0.0.0',40405));s.settimeout(8);print('ready',flush=True);"
              "print(s.recvfrom(100)[1][0])")
    p = subprocess.Popen(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", listen],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        send = ("import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n"
                "for _ in range(10): s.sendto(b'x',('198.51.100.255',40405)); time.sleep(0.2)")
        lab.in_lan([sys.executable, "-c", send], check=False)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out.strip().endswith(send_from_x)


def test_bridged_container(br0, domains):
    lab = br0
    mac = "52:54:00:dd:00:01"
    domains("lxc", "bct1", ct_xml(lab, "bct1", mac, CT_IP, filt="mac-ip"))
    from vzlibvirt.lab.guests import Guest

    g = Guest("bct1", "ct", mac, (CT_IP,))
    dev = lab.host_dev(g)
    link = json.loads(lab.in_host(["ip", "-j", "link", "show", dev]).stdout)[0]
    assert link.get("master") == "br0"
    assert wait_for(lambda: lab.ping_from_x(CT_IP), 20), "X cannot reach the container"
    assert x_neighbour_mac(lab, CT_IP) == mac  # the guest's own MAC, not the host's
    assert udp_seen(lab, lab.container_pid(g), S.X_IP4), "X's broadcast not seen inside"
    assert nft_ports(lab) == 1

    # port security: an address it was not given does not leave the port
    lab.in_container(g, ["ip", "addr", "add", "198.51.100.119/24", "dev", "netif1"])
    r = lab.in_container(g, ["ping", "-c", "2", "-W", "1", "-I", "198.51.100.119",
                             S.X_IP4], check=False)
    assert r.returncode != 0
    assert lab.in_container(g, ["ping", "-c", "1", "-W", "2", "-I", CT_IP, S.X_IP4],
                            check=False).returncode == 0

    lab.virsh("lxc", "destroy", "bct1")
    assert nft_ports(lab) == 0
    records = domains_dir(lab.paths.state).glob("*.json")
    assert all('"bct1"' not in p.read_text() for p in records)


def test_bridged_vm_gets_dhcp_from_the_lan(br0, domains, tmp_path):
    """A VM on br0 (plugged by libvirt) configures itself from a DHCP server on the LAN."""
    lab = br0
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(f"start 198.51.100.150\nend 198.51.100.159\ninterface {S.LAN_DEV}\n"
                    f"lease_file {tmp_path / 'leases'}\npidfile {tmp_path / 'pid'}\n"
                    "option subnet 255.255.255.0\n")
    (tmp_path / "leases").touch()
    server = subprocess.Popen(["ip", "netns", "exec", S.LAN_NETNS, "/bin/busybox", "udhcpd",
                               "-f", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        mac = "52:54:00:dd:00:05"
        domains("qemu", "bvm1", vm_xml(lab, "bvm1", mac))
        console = lab.paths.guests / "bvm1" / "console.log"
        got = wait_for(lambda: "VZLAB-DHCP ip=" in (console.read_text(errors="replace")
                                                    if console.exists() else ""), 180, 1)
        assert got, "the VM got no lease from the LAN through br0"
        text = console.read_text(errors="replace")
        ip = text.split("VZLAB-DHCP ip=")[1].split()[0]
        assert ip.startswith("198.51.100.15")
        assert nft_ports(lab) == 1
        assert wait_for(lambda: lab.ping_from_x(ip), 30), "X cannot reach the VM"
        assert x_neighbour_mac(lab, ip) == mac
    finally:
        server.kill()
        server.wait()
    lab.virsh("qemu", "destroy", "bvm1")
    assert nft_ports(lab) == 0


def test_dhcp_server_in_bridged_container(br0, domains, tmp_path):
    """Seed 5.2.3: a bridged container can serve DHCP; Computer X gets a lease via br0."""
    lab = br0
    mac = "52:54:00:dd:00:02"
    domains("lxc", "bct2", ct_xml(lab, "bct2", mac, CT2_IP, filt="mac-ip"))
    from vzlibvirt.lab.guests import Guest

    pid = lab.container_pid(Guest("bct2", "ct", mac, (CT2_IP,)))
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(f"start 198.51.100.160\nend 198.51.100.169\ninterface netif1\n"
                    f"lease_file {tmp_path / 'leases'}\npidfile {tmp_path / 'pid'}\n"
                    "option subnet 255.255.255.0\n")
    (tmp_path / "leases").touch()
    script = tmp_path / "udhcpc.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "LEASE $ip from $serverid"\n'
                      "exit 0\n")
    script.chmod(0o755)
    server = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "/bin/busybox", "udhcpd",
                               "-f", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        r = lab.in_lan(["/bin/busybox", "udhcpc", "-i", S.LAN_DEV, "-n", "-q", "-f",
                        "-t", "5", "-T", "1", "-s", str(script)], check=False, timeout=60)
        assert f"from {CT2_IP}" in r.stdout, r.stdout + r.stderr
        assert "LEASE 198.51.100.16" in r.stdout
    finally:
        server.kill()
        server.wait()
        with contextlib.suppress(OSError):
            os.unlink(tmp_path / "pid")
