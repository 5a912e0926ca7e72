"""Issue 7 on a real libvirtd: routed VMs under TCG whose initramfs runs only busybox
udhcpc (`vz.dhcp=1`, no address on the kernel command line) configure themselves from
vzlibvirt's dnsmasq, which runs in the lab host under the agent (or, when the lab has no
agent, under `vzlibvirt dhcp` started here)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import pytest

from tests.e2e.helpers import wait_for
from vzlibvirt.dhcp import dnsmasq_pid, read_hosts
from vzlibvirt.lab import agent as lab_agent
from vzlibvirt.lab import daemon
from vzlibvirt.lab.guests import Guest
from vzlibvirt.lab.resident import Resident

OPTION_121 = "staticroutes=169.254.0.1/32 0.0.0.0 0.0.0.0/0 169.254.0.1"


def dhcp_vm(name: str, n: int, ips: tuple[str, ...], mode: str = "routed") -> Guest:
    return Guest(name, "vm", f"52:54:00:cc:00:{n:02x}", ips, mode=mode, dhcp=True)


@pytest.fixture
def dhcp_dir(lab):
    """The lab's dhcp dir once a dnsmasq of ours serves it; a `vzlibvirt dhcp` started
    here (when the agent does not supervise one) is stopped afterwards."""
    d = lab.paths.state / "dhcp"
    supervisor = None
    if not wait_for(lambda: dnsmasq_pid(d), 5, 0.1):
        assert daemon.read_pid(lab.paths, "virtlogd"), "lab daemons are not running"
        supervisor = Resident.start(lab_agent.cli(lab.paths, sys.executable), "dhcp",
                                    log=lab.paths.root / "dhcp-supervisor.log",
                                    new_session=True)
    assert wait_for(lambda: dnsmasq_pid(d), 30, 0.1), "no dnsmasq in the lab"
    try:
        yield d
    finally:
        # it supervised unless it exited 1 (the agent already did)
        if supervisor is not None and supervisor.stop() != 1:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(dnsmasq_pid(d), signal.SIGKILL)  # never outlives the test


def line_of(lab, g: Guest) -> str:
    return f"{g.mac},tag:{lab.host_dev(g)},{g.ips[0]}"


def test_routed_vms_configure_themselves_by_dhcp(lab, run_guests, dhcp_dir):
    vm1 = dhcp_vm("dvm1", 1, ("198.51.100.211",))
    pid = dnsmasq_pid(dhcp_dir)
    run_guests(vm1)
    assert line_of(lab, vm1) in read_hosts(dhcp_dir)
    want = f"VZLAB-DHCP ip=198.51.100.211 mask=32 router=169.254.0.1 {OPTION_121}"
    assert lab.wait_console(vm1, want, 180), lab.console(vm1).read_text(errors="replace")
    assert lab.wait_console(vm1, "VZLAB-GW-OK", 60), "VM cannot reach 169.254.0.1"
    assert wait_for(lambda: lab.ping_from_x("198.51.100.211"), 30), "X cannot reach dvm1"

    # a second VM, started later on another tap: the same dnsmasq serves it
    vm2 = dhcp_vm("dvm2", 2, ("198.51.100.212",))
    run_guests(vm2)
    assert lab.wait_console(vm2, "VZLAB-DHCP ip=198.51.100.212 mask=32", 180)
    assert wait_for(lambda: lab.ping_from_x("198.51.100.212"), 30), "X cannot reach dvm2"
    assert dnsmasq_pid(dhcp_dir) == pid

    # a stopped VM's entry is gone
    line1 = line_of(lab, vm1)
    lab.destroy(vm1)
    assert line1 not in read_hosts(dhcp_dir)
    assert line_of(lab, vm2) in read_hosts(dhcp_dir)

    # dnsmasq dies: it is restarted with every running VM's entry, and serves new VMs
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: dnsmasq_pid(dhcp_dir) not in (None, pid), 30), "not restarted"
    assert read_hosts(dhcp_dir) == [line_of(lab, vm2)]
    vm3 = dhcp_vm("dvm3", 3, ("198.51.100.213",))
    run_guests(vm3)
    assert lab.wait_console(vm3, "VZLAB-DHCP ip=198.51.100.213 mask=32", 180)
    assert wait_for(lambda: lab.ping_from_x("198.51.100.213"), 30), "X cannot reach dvm3"


def test_no_dhcp_answer_without_an_entry(lab, run_guests, dhcp_dir):
    """A routed VM whose MAC has no entry (no IPv4 to hand out) asks and asks, unanswered,
    while a routed VM beside it is served."""
    silent = dhcp_vm("dvm6", 6, ("2001:db8:100::216",))
    served = dhcp_vm("dvm7", 7, ("198.51.100.217",))
    run_guests(silent, served)
    assert lab.wait_console(served, "VZLAB-DHCP ip=198.51.100.217", 180)
    assert lab.wait_console(silent, "VZLAB-DHCP-RETRY", 120)
    assert wait_for(lambda: lab.console(silent).read_text(errors="replace")
                    .count("VZLAB-DHCP-RETRY") >= 2, 120)
    assert "VZLAB-DHCP ip=" not in lab.console(silent).read_text(errors="replace")
    assert all(silent.mac not in line for line in read_hosts(dhcp_dir))


def test_bridged_vm_gets_no_dhcp_answer(lab, run_guests, dhcp_dir):
    """A bridged VM's tap is a port of the lab's br0: its DHCP requests go to the LAN
    (no DHCP server there) and never reach our dnsmasq."""
    vmb = dhcp_vm("dvm8", 8, ("198.51.100.218",), mode="bridged")
    run_guests(vmb)
    assert lab.host_dev(vmb) in lab.in_host(["ip", "-o", "link", "show", "master",
                                             "br0"]).stdout
    assert wait_for(lambda: lab.console(vmb).read_text(errors="replace")
                    .count("VZLAB-DHCP-RETRY") >= 2, 180), "the VM never asked"
    assert "VZLAB-DHCP ip=" not in lab.console(vmb).read_text(errors="replace")
    assert all(vmb.mac not in line for line in read_hosts(dhcp_dir))
