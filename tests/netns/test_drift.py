"""Nothing dropped stays dropped (issue 15): the agent re-publishes when a neighbour
device gets its carrier back, and its periodic resync repairs entries that vanished with
no link event at all.

Linux 6.1 (Debian 12) deletes a device's proxy entries when its carrier goes down; this
kernel keeps them, so the test does what 6.1 does by hand: carrier down (the veth peer
in the LAN namespace goes down), the uplink's proxy entries flushed, carrier up.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.netns.test_agent import OPS, life
from tests.netns.test_agent import start_agent as start_resident
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.resident import Resident
from vzlibvirt.lab.sh import wait_for

pytestmark = pytest.mark.netns
IP = "198.51.100.101"


def start_agent(topo, vz, resync_s: int = 0) -> Resident:
    """Shims installed and an agent that follows no libvirt (netlink events only)."""
    vz.write_config(f'[agent]\nsocket = "{vz.root / "agent.sock"}"\nconnect = []\n'
                    f'resync_s = {resync_s}\n[routed]\nneighbour_devs = ["enp0s5"]\n')
    r = vz.run("install-hooks", "--hooks-dir", str(vz.root / "hooks"), "--config",
               str(vz.config))
    assert r.rc == 0, r.stderr
    return start_resident(topo, vz)


@pytest.fixture
def wired(topo, vz):
    """A routed guest wired through the shims, and a way to start the agent."""
    agents: list[Resident] = []

    def start(resync_s: int) -> Resident:
        agent = start_agent(topo, vz, resync_s)
        agents.append(agent)
        g = topo.add_guest("ct1", [IP])
        xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev,
                                                   native=True)])
        life(vz, topo, xml, ops=OPS[:3])
        assert topo.proxy_entries() == {IP}
        return agent

    yield start
    for a in agents:
        a.stop()


def test_carrier_flap_with_flushed_proxy_entries_republished(topo, wired):
    agent = wired(resync_s=0)  # only the carrier transition can bring the entry back
    times = []
    for flap in range(20):
        topo.ip(topo.lan, "link", "set", "eth0", "down")
        assert wait_for(lambda: "LOWER_UP" not in topo.ip(topo.host, "link", "show",
                                                            "enp0s5"), 5)
        topo.ip(topo.host, "neigh", "flush", "proxy", "dev", "enp0s5")  # what 6.1 does
        assert topo.proxy_entries() == set(), f"flap {flap}: flush did not take"
        t0 = time.monotonic()
        topo.ip(topo.lan, "link", "set", "eth0", "up")
        assert wait_for(lambda: topo.proxy_entries() == {IP}, 1.0), \
            f"flap {flap}: proxy entry not back within 1 s"
        times.append(time.monotonic() - t0)
    assert topo.ping(topo.lan, IP, wait=3)
    assert agent.proc.poll() is None
    print(f"carrier up -> entry back: max {max(times) * 1000:.0f} ms over 20 flaps")


def test_resync_repairs_a_flush_without_any_link_event(topo, wired):
    agent = wired(resync_s=1)
    topo.ip(topo.host, "neigh", "flush", "proxy", "dev", "enp0s5")
    topo.ip(topo.host, "route", "del", IP)
    assert topo.proxy_entries() == set() and topo.route_to(IP) is None
    assert wait_for(lambda: topo.proxy_entries() == {IP} and topo.route_to(IP), 2.5), \
        "not repaired within one resync period (1 s) and a margin"
    assert topo.ping(topo.lan, IP, wait=3)
    log = agent.log.read_text()
    assert f"resync: ct1: re-added proxy arp {IP} on enp0s5" in log
    assert f"resync: ct1: re-added route {IP}/32 dev vnet0" in log
    # nothing to repair: no more lines
    time.sleep(2.2)
    assert agent.log.read_text().count("resync:") == 2, agent.log.read_text()
    # the guest's own device taken down (its routes go with it): up again, route back
    topo.ip(topo.host, "link", "set", "vnet0", "down")
    assert topo.route_to(IP) is None
    assert wait_for(lambda: topo.route_to(IP) and topo.ping(topo.lan, IP, wait=1), 4)
    assert "resync: ct1: re-added link vnet0 up" in agent.log.read_text()


def test_agent_refuses_a_host_address_at_prepare(topo, vz):
    """Refuse early: served by the agent, `prepare` already knows the host's addresses,
    so libvirt never creates the guest."""
    from tests.netns.test_agent import shim

    agent = start_agent(topo, vz)
    try:
        xml = domain_xml("ct1", interfaces=[routed("52:54:00:aa:00:01", ["198.51.100.2"],
                                                   target="vnet0", native=True)])
        r = shim(vz, "lxc", "ct1", "prepare", "begin", xml, topo)
        err = r.stderr.decode()
        assert r.returncode == 1 and err.count("\n") == 1, err
        assert "IP 198.51.100.2 is an address of this host" in err
        assert "domain 'ct1' interface 52:54:00:aa:00:01" in err
        assert vz.records() == []
    finally:
        agent.stop()


COMPARE = """
import json, sys
from vzlibvirt.kernel_tables import KernelTables
from vzlibvirt.netlink import Netlink
from vzlibvirt.netlink_bulk import BulkView
with KernelTables() as kt, Netlink() as nl:
    bv = BulkView(nl)
    host = lambda s: sorted(x for x in s if x[1] in (32, 128))
    print(json.dumps({
        "routes": [sorted(kt.routes()), host(bv._routes)],
        "proxies": [sorted(kt.proxies()), sorted(bv._pneigh)],
        "addrs": [sorted(kt.addresses()),
                  sorted(a for a in bv._addrs if a[2] in (32, 128))],
    }))
"""


def test_resync_dumps_match_the_bulk_view(topo, vz, wired):
    """The resync's dumps (kernel_tables.py) see exactly what reconcile's bulk view sees
    (tests/netns/test_rtnl.py checks the bulk view against pyroute2)."""
    wired(resync_s=0)
    g = topo.add_guest("ct2", ["198.51.100.102", "2001:db8:100::102"])
    xml = domain_xml("ct2", interfaces=[routed(g.mac, g.ips, target=g.host_dev,
                                               native=True)])
    life(vz, topo, xml, name="ct2", ops=OPS[:3])
    r = topo.exec(topo.host, sys.executable, "-c", COMPARE, check=True)
    got = json.loads(r.stdout)
    for table, (raw, reference) in got.items():
        assert raw == reference, table
    index = {name: json.loads(topo.ip(topo.host, "-j", "link", "show", name))[0]["ifindex"]
             for name in (g.host_dev, "enp0s5")}
    assert ["2001:db8:100::102", 128, index[g.host_dev]] in got["routes"][0]
    assert ["198.51.100.102", index["enp0s5"]] in got["proxies"][0]
    assert [index[g.host_dev], "169.254.0.1", 32] in got["addrs"][0]


UNCHANGED = """
import json, sys
from pathlib import Path
from vzlibvirt.config import load_config
from vzlibvirt.netlink import Netlink
from vzlibvirt.resync import Memory, resync
from vzlibvirt.state import RecordIndex, StateStore
import subprocess
store = StateStore(load_config(Path(sys.argv[1])).state.dir)
index, mem, out = RecordIndex(store), Memory(), []
def one(nl):
    p = resync(store, nl, index, mem)
    out.append([p.unchanged, p.checked, len(p.repaired), p.dumped])
with Netlink() as nl:
    one(nl)
    one(nl)
    subprocess.run(["ip", "neigh", "del", "proxy", sys.argv[2], "dev", "enp0s5"], check=True)
    one(nl)
    one(nl)
    one(nl)
    import dataclasses  # another process's record: the index's next scan brings it
    twin = dataclasses.replace(index.all()[0], uuid="00000000-0000-0000-0000-00000000beef",
                               key="lxc-00000000-0000-0000-0000-00000000beef")
    store.save(twin)
    one(nl)
    one(nl)
    subprocess.run(["ip", "route", "del", sys.argv[2] + "/32"], check=True)  # announced
    one(nl)
    one(nl)
    one(nl)
mem.close()
print(json.dumps(out))
"""


def test_resync_pass_over_an_unchanged_host_stops_after_the_dumps(topo, vz, wired):
    """Kept between passes, the resync's memory tells an unchanged host by the kernel's
    byte-identical answers; a silent loss still changes the answer and is repaired.
    Without route, address or link news only the proxy table is read; a route deleted
    is news, and the next pass reads and repairs it."""
    wired(resync_s=0)
    r = topo.exec(topo.host, sys.executable, "-c", UNCHANGED, str(vz.config), IP, check=True)
    passes = json.loads(r.stdout)
    checked = passes[0][1]
    assert checked >= 3  # a route, a proxy entry and an address at least
    every, proxies = ["addresses", "proxies", "routes"], ["proxies"]
    assert passes == [[False, checked, 0, every],  # the first pass compares
                      [True, checked, 0, proxies],  # no news: only the proxy entries read
                      [False, checked, 1, every],  # the proxy entry deleted: re-added
                      [False, checked, 0, every],  # after a repair: compared again
                      [True, checked, 0, proxies],
                      [False, 2 * checked, 0, every],  # a new record: compared too
                      [True, 2 * checked, 0, proxies],
                      [False, 2 * checked, 1, every],  # the route deleted: news, re-added
                      [False, 2 * checked, 0, every],  # the repair was news itself
                      [True, 2 * checked, 0, proxies]]
    assert topo.proxy_entries() == {IP}
