"""DHCP for routed VMs (issue 7) on the real kernel with the real dnsmasq.

Each guest is a namespace behind a veth that plays the VM's tap, and runs busybox
`udhcpc` as a cloud image's DHCP client would. dnsmasq runs only inside the test's host
namespace, under `vzlibvirt dhcp` or the agent, and is ended at teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import Vz, require
from tests.netns.dhcp_helpers import (
    BUSYBOX,
    Supervisor,
    dnsmasq_pids,
    kill_dnsmasqs,
    udhcpc,
    wait_for,
)
from vzlibvirt.lab.domxml import bridged, domain_xml, routed
from vzlibvirt.lab.topology import Guest

pytestmark = pytest.mark.netns
OPTION_121 = "169.254.0.1/32 0.0.0.0 0.0.0.0/0 169.254.0.1"


class RunVz(Vz):
    """State under /run, as in production: dnsmasq drops root to `nobody`, who must reach
    the hosts file (pytest's tmp dirs are private to root)."""

    @property
    def state(self) -> Path:
        return Path("/run") / f"vzt-dhcp-{hashlib.sha1(str(self.root).encode()).hexdigest()[:10]}"


@pytest.fixture
def dvz(topo, vz):
    require(shutil.which("dnsmasq") is not None or os.access("/usr/sbin/dnsmasq", os.X_OK),
            "dnsmasq is not installed (dnsmasq-base)")
    require(os.access(BUSYBOX, os.X_OK), "busybox-static is not installed")
    env = RunVz(vz.root)
    env.write_config(f'[agent]\nsocket = "{vz.root / "agent.sock"}"\n'
                     '[routed]\nneighbour_devs = ["enp0s5"]\n'
                     '[dhcp]\nenable = true\ndns_servers = ["203.0.113.53"]\n')
    # Computer X reaches the guests' second subnet through the host
    topo.ip(topo.lan, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    try:
        yield env
    finally:
        kill_dnsmasqs(env.state)
        shutil.rmtree(env.state, ignore_errors=True)


@pytest.fixture
def dhcp_env(topo, dvz):
    """Start `vzlibvirt dhcp` or `vzlibvirt agent`; all are stopped (and every dnsmasq of
    the test killed) at teardown, also when the test fails."""
    residents: list[Supervisor] = []

    def run(command: str = "dhcp") -> Supervisor:
        r = Supervisor.launch(topo, dvz, command)
        residents.append(r)
        return r

    try:
        yield run
    finally:
        for r in residents:
            r.stop()
        kill_dnsmasqs(dvz.state)


def vm(topo, name: str, ip: str):
    g = topo.add_guest(name, [ip], configure=False)
    xml = domain_xml(name, driver="qemu", interfaces=[routed(g.mac, [ip], target=g.host_dev,
                                                             guest=None)])
    return g, xml


def hosts(dvz) -> list[str]:
    path = dvz.state / "dhcp" / "hosts"
    return path.read_text().splitlines() if path.exists() else []


def test_routed_vms_get_their_32_and_routes_without_restarts(topo, dvz, dhcp_env, tmp_path):
    server = dhcp_env("dhcp")
    pid = server.dnsmasq_pid()
    g1, xml1 = vm(topo, "vm1", "198.51.100.101")
    dvz.start("qemu", "vm1", xml1, ns=topo.host)
    assert hosts(dvz) == [f"{g1.mac},tag:{g1.host_dev},198.51.100.101"]
    status = json.loads(dvz.run("status", "--json", ns=topo.host).stdout)
    assert {"entry": f"dhcp host {g1.mac} -> 198.51.100.101/32 on {g1.host_dev}",
            "present": True}.items() <= next(
        e for e in status[0]["entries"] if e["entry"].startswith("dhcp")).items()

    got = udhcpc(topo, g1, tmp_path)
    assert got is not None, server.log.read_text()
    assert got["ip"] == "198.51.100.101" and got["mask"] == "32"
    assert got["subnet"] == "255.255.255.255" and got["router"] == "169.254.0.1"
    assert got["staticroutes"] == OPTION_121 and got["dns"].strip() == "203.0.113.53"
    routes = topo.ip(g1.ns, "route")
    assert "default via 169.254.0.1" in routes and "169.254.0.1 dev venet0" in routes
    assert "198.51.100.101/32" in topo.ip(g1.ns, "addr", "show", "venet0")
    assert topo.ping(topo.lan, "198.51.100.101", wait=3)

    # a second VM on another tap and another subnet: served by the same dnsmasq
    g2, xml2 = vm(topo, "vm2", "203.0.113.7")
    dvz.start("qemu", "vm2", xml2, ns=topo.host)
    got2 = udhcpc(topo, g2, tmp_path)
    assert got2 is not None and got2["ip"] == "203.0.113.7" and got2["mask"] == "32"
    assert got2["staticroutes"] == OPTION_121
    assert topo.ping(topo.lan, "203.0.113.7", wait=3)
    assert server.dnsmasq_pid() == pid and dnsmasq_pids(dvz.state) == [pid]

    # a stopped VM's entry is gone, and its MAC gets no answer any more
    dvz.stop("qemu", "vm1", xml1, ns=topo.host)
    assert hosts(dvz) == [f"{g2.mac},tag:{g2.host_dev},203.0.113.7"]
    assert udhcpc(topo, g1, tmp_path, tries=2) is None
    assert server.dnsmasq_pid() == pid
    dvz.stop("qemu", "vm2", xml2, ns=topo.host)
    assert hosts(dvz) == [] and dvz.records() == []
    assert server.stop() == 0 and dnsmasq_pids(dvz.state) == []


def test_no_answer_to_strangers(topo, dvz, dhcp_env, tmp_path):
    """Unknown MACs on a routed tap, a known MAC on another tap, a bridged port and the
    uplink's LAN get nothing; the routed VM itself is served."""
    server = dhcp_env("dhcp")
    server.dnsmasq_pid()
    g1, xml1 = vm(topo, "vm1", "198.51.100.101")
    dvz.start("qemu", "vm1", xml1, ns=topo.host)
    # unknown MAC on the routed tap
    topo.ip(g1.ns, "link", "set", g1.guest_dev, "address", "52:54:00:ee:ee:01")
    assert udhcpc(topo, g1, tmp_path, tries=2) is None
    topo.ip(g1.ns, "link", "set", g1.guest_dev, "address", g1.mac)
    assert udhcpc(topo, g1, tmp_path) is not None
    # vm1's MAC on another routed tap (a guest spoofing it)
    g2, xml2 = vm(topo, "vm2", "198.51.100.102")
    dvz.start("qemu", "vm2", xml2, ns=topo.host)
    topo.ip(g2.ns, "link", "set", g2.guest_dev, "address", g1.mac)
    assert udhcpc(topo, g2, tmp_path, tries=2) is None
    # a bridged VM: its tap (vnetN, matching the interface pattern) is a port of br0
    r = dvz.run("bridge", "create", "br0", ns=topo.host)
    assert r.rc == 0, r.stderr
    gb = topo.add_bridged_guest("vmb", "198.51.100.150/24")
    xmlb = domain_xml("vmb", driver="qemu", interfaces=[bridged(gb.mac, target=gb.host_dev,
                                                                guest=None)])
    dvz.start("qemu", "vmb", xmlb, ns=topo.host)
    topo.ip(gb.ns, "addr", "flush", "dev", gb.guest_dev)
    assert udhcpc(topo, gb, tmp_path, tries=2) is None
    # Computer X on the uplink's LAN
    lan = Guest("x", topo.lan, "enp0s5", "eth0", "", [])
    assert udhcpc(topo, lan, tmp_path, tries=2) is None
    assert "198.51.100.10/24" not in topo.ip(topo.lan, "addr")  # flushed by deconfig
    topo.ip(topo.lan, "addr", "add", "198.51.100.10/24", "dev", "eth0")
    for name, xml in (("vmb", xmlb), ("vm2", xml2), ("vm1", xml1)):
        dvz.stop("qemu", name, xml, ns=topo.host)
    assert "DHCPOFFER(vnet1)" not in server.log.read_text()


def test_agent_restarts_dnsmasq_with_every_entry(topo, dvz, dhcp_env, tmp_path):
    agent = dhcp_env("agent")
    pid = agent.dnsmasq_pid()
    guests = [vm(topo, f"vm{i}", f"198.51.100.{100 + i}") for i in (1, 2)]
    for (g, xml) in guests:
        dvz.start("qemu", g.name, xml, ns=topo.host)
    lines = sorted(hosts(dvz))
    assert len(lines) == 2
    (dvz.state / "dhcp" / "hosts").write_text("")  # the file is rebuilt from the records
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (p := agent.dnsmasq_pid()) != pid and p)
    assert new and new != pid, agent.log.read_text()
    assert sorted(hosts(dvz)) == lines
    for g, _ in guests:
        got = udhcpc(topo, g, tmp_path)
        assert got is not None and got["ip"] == g.ips[0], agent.log.read_text()
        assert topo.ping(topo.lan, g.ips[0], wait=3)
    assert "restarting" in agent.log.read_text()
    assert agent.stop() == 0
    assert wait_for(lambda: dnsmasq_pids(dvz.state) == [], 10)
    for g, xml in guests:
        dvz.stop("qemu", g.name, xml, ns=topo.host)


def test_containers_and_disabled_config_get_no_entry(topo, dvz, dhcp_env):
    g = topo.add_guest("ct1", ["198.51.100.101"])
    xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev, native=True)])
    dvz.start("lxc", "ct1", xml, ns=topo.host)
    assert hosts(dvz) == []
    dvz.stop("lxc", "ct1", xml, ns=topo.host)
    server = dhcp_env("dhcp")
    server.dnsmasq_pid()
    second = dhcp_env("dhcp")
    assert second.proc.wait(timeout=30) == 1
    assert "another DHCP supervisor" in second.log.read_text()
    dvz.write_config('[routed]\nneighbour_devs = ["enp0s5"]\n')
    r = dvz.run("dhcp", ns=topo.host)
    assert r.rc == 1 and "not enabled" in r.stderr


def test_ipv6_router_advertisement_names_fe80_1(topo, dvz, dhcp_env, tmp_path):
    """A VM with a static /128 and no route learns `default via fe80::1` from our RA (no
    prefix: SLAAC adds nothing) and is reached by Computer X."""
    server = dhcp_env("dhcp")
    server.dnsmasq_pid()
    g, xml = vm(topo, "vm6", "2001:db8:100::106")
    topo.sysctl(g.ns, f"net.ipv6.conf.{g.guest_dev}.accept_ra", "1")
    topo.ip(g.ns, "-6", "addr", "add", "2001:db8:100::106/128", "dev", g.guest_dev, "nodad")
    dvz.start("qemu", "vm6", xml, ns=topo.host)
    assert hosts(dvz) == []  # no IPv4: nothing for DHCPv4
    route = wait_for(lambda: "default via fe80::1 dev venet0 proto ra" in
                     topo.ip(g.ns, "-6", "route", "show", "default"))
    assert route, topo.ip(g.ns, "-6", "route")
    addrs = topo.ip(g.ns, "-6", "addr", "show", "dev", g.guest_dev, "scope", "global")
    assert addrs.count("inet6 ") == 1  # no prefix advertised: no SLAAC address
    assert topo.ping(topo.lan, "2001:db8:100::106", wait=3)
    dvz.stop("qemu", "vm6", xml, ns=topo.host)


def test_ip_reused_by_a_new_mac_is_served(topo, dvz, dhcp_env, tmp_path):
    """dnsmasq remembers leases in memory: a stopped VM's lease must not keep its IP from
    the next VM that gets the address (another MAC), long before the lease would expire."""
    server = dhcp_env("dhcp")
    pid = server.dnsmasq_pid()
    g1, xml1 = vm(topo, "old", "198.51.100.120")
    dvz.start("qemu", "old", xml1, ns=topo.host)
    assert udhcpc(topo, g1, tmp_path) is not None
    dvz.stop("qemu", "old", xml1, ns=topo.host)
    topo.ip(topo.host, "link", "del", g1.host_dev)  # QEMU's tap goes with the VM
    g2, xml2 = vm(topo, "new", "198.51.100.120")
    dvz.start("qemu", "new", xml2, ns=topo.host)
    got = udhcpc(topo, g2, tmp_path)
    assert got is not None and got["ip"] == "198.51.100.120", server.log.read_text()
    assert server.dnsmasq_pid() == pid
    dvz.stop("qemu", "new", xml2, ns=topo.host)
