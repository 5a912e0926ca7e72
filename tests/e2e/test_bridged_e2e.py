"""Seed 5.2.1.2 / 5.2.2.1 on the real libvirtd: bridged containers and VMs on br0.

The guests use the lab's br0, which `lab up` makes over the uplink with `vzlibvirt bridge
create` (and which the routed guests' proxy entries live on). Guests here are bridged
only, with filters the demo's seed guests do not use (the lab's guest builder).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests.e2e.helpers import wait_for
from vzlibvirt.contract import domains_dir
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.guests import Guest

CT_IP = "198.51.100.111"
CT2_IP = "198.51.100.112"


@pytest.fixture
def br0(lab):
    """The lab, whose br0 holds the uplink; creating it again is a no-op."""
    r = lab.bridge("create", S.BRIDGE, "--uplink", S.UPLINK, check=False)
    assert r.rc == 0, r.stderr
    assert "already exists with uplink" in r.text + r.stderr, r.text + r.stderr
    return lab


@pytest.fixture
def domains(br0, run_guests):
    """Define and start guests; all are destroyed and undefined afterwards."""

    def start(g: Guest) -> None:
        (r,) = run_guests(g, check=False)
        assert r.returncode == 0, r.stderr

    return start


def bridged_ct(name: str, mac: str, ip: str, filt: str) -> Guest:
    """A seed bridged container (netif1 on the LAN /24) with port security FILT."""
    return Guest(name, "ct", mac, (ip,), mode="bridged",
                 vz_attrs={"bridge": S.BRIDGE, "filter": filt})


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
    g = bridged_ct("bct1", mac, CT_IP, "mac-ip")
    domains(g)
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
        vm = Guest("bvm1", "vm", mac, (), mode="bridged", dhcp=True, source_bridge=S.BRIDGE,
                   vz_attrs={"filter": "mac"})
        domains(vm)
        console = lab.console(vm)
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
    g = bridged_ct("bct2", "52:54:00:dd:00:02", CT2_IP, "mac-ip")
    domains(g)
    pid = lab.container_pid(g)
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
