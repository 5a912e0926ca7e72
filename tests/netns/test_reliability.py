"""Concurrency and uplink flaps on the real kernel (issue 5's guarantees)."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.netns.test_agent import start_agent
from vzlibvirt.contract import claims_dir
from vzlibvirt.lab.domxml import domain_xml, routed

pytestmark = pytest.mark.netns
N = 20


def _hook_proc(vz, topo, name, op, xml):
    return subprocess.Popen(vz.argv(*vz.hook_args("lxc", name, op), ns=topo.host),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=vz.env())


def _parallel(vz, topo, calls):
    procs = [(name, _hook_proc(vz, topo, name, op, xml)) for name, op, xml in calls]
    results = {}
    for (name, p), (_, _, xml) in zip(procs, calls, strict=True):
        out, err = p.communicate(xml, timeout=120)
        results[name] = (p.returncode, err.decode())
    return results


def test_parallel_hooks_leave_every_entry_right(topo, vz):
    vz.write_config("[routed]\nneighbour_devs = [\"enp0s5\"]\n")
    guests = {}
    for i in range(N):
        ip = f"198.51.100.{110 + i}"
        g = topo.add_guest(f"ct{i}", [ip], configure=False)
        guests[g.name] = (g, domain_xml(g.name, interfaces=[routed(g.mac, [ip],
                                                                   target=g.host_dev,
                                                                   native=True)]))
    for op in ("prepare", "started"):
        res = _parallel(vz, topo, [(n, op, x) for n, (_, x) in guests.items()])
        assert all(rc == 0 for rc, _ in res.values()), res
    want = {g.ips[0] for g, _ in guests.values()}
    assert topo.proxy_entries() == want
    for g, _ in guests.values():
        assert topo.route_to(g.ips[0]).startswith(f"{g.ips[0]} dev {g.host_dev}")
    records = [json.loads(p.read_text()) for p in vz.records()]
    assert sorted(r["name"] for r in records) == sorted(guests)
    assert all(r["phase"] == "wired" for r in records)
    claims = claims_dir(vz.state)
    assert sorted(claims.iterdir()) == sorted(claims / ip for ip in want)

    # half of them stop while the other half re-apply (reconnect), all at once
    names = sorted(guests)
    calls = [(n, "stopped", guests[n][1]) for n in names[::2]]
    calls += [(n, "reconnect", guests[n][1]) for n in names[1::2]]
    res = _parallel(vz, topo, calls)
    assert all(rc == 0 for rc, _ in res.values()), res
    left = {guests[n][0].ips[0] for n in names[1::2]}
    assert topo.proxy_entries() == left and len(vz.records()) == N // 2
    res = _parallel(vz, topo, [(n, "release", guests[n][1]) for n in names])
    assert all(rc == 0 for rc, _ in res.values()), res
    res = _parallel(vz, topo, [(n, "stopped", guests[n][1]) for n in names[1::2]])
    assert topo.proxy_entries() == set() and vz.records() == []
    assert not any("proto 247" in r for r in topo.host_routes())


def test_racing_for_one_ip_exactly_one_wins(topo, vz):
    vz.write_config("[routed]\nneighbour_devs = [\"enp0s5\"]\n")
    calls = []
    for i in range(6):
        g = topo.add_guest(f"ct{i}", ["198.51.100.199"], configure=False)
        calls.append((g.name, "started", domain_xml(g.name, interfaces=[
            routed(g.mac, g.ips, target=g.host_dev, native=True)])))
    res = _parallel(vz, topo, calls)
    winners = [n for n, (rc, _) in res.items() if rc == 0]
    assert len(winners) == 1, res
    for n, (rc, err) in res.items():
        if n not in winners:
            assert rc == 1 and f"already routed to running domain '{winners[0]}'" in err
    assert topo.proxy_entries() == {"198.51.100.199"} and len(vz.records()) == 1


def test_uplink_flapped_100_times(topo, vz):
    """50 carrier losses (the LAN side goes away) and 50 administrative down/up cycles
    (which flush proxy entries: the agent puts them back); after each flap the proxy
    entry is there and Computer X reaches the guest."""
    vz.write_config(f'[agent]\nsocket = "{vz.root / "agent.sock"}"\n')
    g = topo.add_guest("ct1", ["198.51.100.101"])
    vz.start("lxc", "ct1", domain_xml("ct1", interfaces=[routed(g.mac, g.ips,
                                                                 target=g.host_dev,
                                                                 native=True)]), topo.host)
    agent = start_agent(topo, vz)
    try:
        lost_for_good = 0
        for i in range(100):
            ns, dev = (topo.lan, "eth0") if i % 2 == 0 else (topo.host, "enp0s5")
            topo.ip(ns, "link", "set", dev, "down")
            if ns == topo.lan:  # carrier loss keeps the entry
                assert topo.proxy_entries() == {"198.51.100.101"}, f"flap {i}"
            topo.ip(ns, "link", "set", dev, "up")
            deadline = time.monotonic() + 5
            while topo.proxy_entries() != {"198.51.100.101"}:
                if time.monotonic() > deadline:
                    lost_for_good += 1
                    break
                time.sleep(0.01)
            assert topo.ping(topo.lan, "198.51.100.101", count=1, wait=3), f"flap {i}"
        assert lost_for_good == 0
    finally:
        agent.stop()


def test_parallel_pings_survive_reconnect_storm(topo, vz):
    """Re-applying the wiring (libvirtd restarts call reconnect) never breaks traffic."""
    g = topo.add_guest("ct1", ["198.51.100.101"])
    xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev, native=True)])
    vz.start("lxc", "ct1", xml, topo.host)
    ping = subprocess.Popen(["ip", "netns", "exec", topo.lan, "ping", "-n", "-i", "0.05",
                             "-c", "60", "198.51.100.101"], stdout=subprocess.PIPE, text=True)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: vz.hook("lxc", "ct1", "reconnect", xml,
                                                  ns=topo.host), range(8)))
    out = ping.communicate(timeout=60)[0]
    assert all(r.rc == 0 for r in results)
    assert " 0% packet loss" in out, out
