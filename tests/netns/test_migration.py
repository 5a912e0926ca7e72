"""Live migration on the real kernel, without libvirt: the destination's hooks prepare a
guest that still runs elsewhere without telling the LAN, `publish` (the resumed event)
tells it at once, `withdraw` (the source's suspended/stopped event) takes the routes and
proxy entries back, a failed migration leaves either side exact (docs/migration.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vzlibvirt.contract import incoming_path
from vzlibvirt.lab.domxml import bridged, domain_xml, routed
from vzlibvirt.lab.runner import in_netns

pytestmark = pytest.mark.netns
PROBE = Path(__file__).with_name("migration_probe.py")
IPS = ["198.51.100.150", "2001:db8:100::150"]
FAKE_MAC = "02:00:00:00:00:99"  # what Computer X believes before an announcement


@pytest.fixture
def vm(topo, vz):
    vz.write_config()
    g = topo.add_guest("vm1", IPS, host_dev="vnet7", guest_dev="eth0")
    xml = domain_xml("vm1", driver="qemu", interfaces=[routed(g.mac, IPS, target=g.host_dev)])
    key = "qemu-" + xml.split(b"<uuid>")[1].split(b"</uuid>")[0].decode()
    return g, xml, key


def agent_side(vz, topo, *args: str, stdin: bytes = b""):
    """A call as the agent makes it, inside the host namespace."""
    return subprocess.run([*in_netns(topo.host), sys.executable, str(PROBE), *args],
                          input=stdin, capture_output=True, env=vz.env(), timeout=60)


def agent_hook(vz, topo, op: str, xml: bytes, name: str = "vm1"):
    r = agent_side(vz, topo, "hook", *vz.hook_args("qemu", name, op)[1:], stdin=xml)
    assert r.returncode == 0, (op, r.stderr.decode())
    return r


def record(vz, key: str) -> dict | None:
    path = vz.state / "domains" / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def x_answers_for(topo, ips: list[str]) -> None:
    """Computer X owns the IPs, as the source host's proxy entries answer for them."""
    for ip in ips:
        topo.ip(topo.lan, "addr", "add", f"{ip}/{128 if ':' in ip else 32}", "dev", "eth0",
                *(["nodad"] if ":" in ip else []))


def x_believes(topo, mac: str) -> None:
    """Computer X's neighbour entries for the guest IPs point at MAC; an announcement
    replaces them at once (locktime 0: no one-second guard against quick changes)."""
    topo.sysctl(topo.lan, "net.ipv4.neigh.eth0.locktime", "0")
    for ip in IPS:
        topo.ip(topo.lan, "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "stale")


def x_macs(topo) -> dict[str, str]:
    out = {}
    for fam in ("-4", "-6"):
        for n in json.loads(topo.ip(topo.lan, "-j", fam, "neigh", "show", "dev", "eth0")):
            if n["dst"] in IPS:
                out[n["dst"]] = n.get("lladdr", "")
    return out


def uplink_mac(topo) -> str:
    return json.loads(topo.ip(topo.host, "-j", "link", "show", "enp0s5"))[0]["address"]


def routes_of(topo) -> set[str]:
    return {ip for ip in IPS if topo.route_to(ip)}


def holds_nothing(topo) -> bool:
    """No route, proxy entry or gateway address of the guest (settings on its device
    stay by design: they die with the tap)."""
    addrs = topo.ip(topo.host, "-o", "addr", "show", "dev", "vnet7")
    return (routes_of(topo) == set() and topo.proxy_entries() == set()
            and "169.254.0.1" not in addrs and "fe80::1/128" not in addrs)


def test_destination_holds_the_lan_back_until_the_guest_resumes(topo, vz, vm):
    g, xml, key = vm
    x_answers_for(topo, IPS)  # the source still answers: a probe would refuse (issue 14)
    r = agent_hook(vz, topo, "migrate", xml)
    assert r.stdout == xml  # a filter: the XML goes back unchanged
    assert incoming_path(vz.state, key).exists()
    x_believes(topo, FAKE_MAC)
    for op in ("prepare", "start", "started"):
        agent_hook(vz, topo, op, xml)
    assert not incoming_path(vz.state, key).exists()  # the mark is used up
    assert record(vz, key)["stage"] == "incoming"
    assert routes_of(topo) == set(IPS)  # the host side is ready ...
    assert topo.proxy_entries() == set()  # ... the LAN is not told
    time.sleep(0.3)
    assert set(x_macs(topo).values()) == {FAKE_MAC}  # and nothing was announced

    for ip in IPS:  # the source withdrew (suspended for the switch-over)
        topo.ip(topo.lan, "addr", "del", f"{ip}/{128 if ':' in ip else 32}", "dev", "eth0")
    x_believes(topo, FAKE_MAC)
    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)
    assert r.returncode == 0, r.stderr.decode()
    assert topo.proxy_entries() == set(IPS)
    assert record(vz, key)["stage"] == "published"
    mac = uplink_mac(topo)
    assert x_macs(topo) == dict.fromkeys(IPS, mac)  # announced at once, both families
    for ip in IPS:
        assert topo.ping(topo.lan, ip), ip
    vz.stop("qemu", "vm1", xml, topo.host)
    assert holds_nothing(topo)
    assert vz.applied() == [vz.state / d for d in ("domains", "incoming", "ips", "lock")]


def test_source_withdraws_and_a_failed_migration_publishes_again(topo, vz, vm):
    g, xml, key = vm
    vz.start("qemu", "vm1", xml, topo.host)
    assert topo.proxy_entries() == set(IPS) and routes_of(topo) == set(IPS)
    claims = sorted(p.name for p in (vz.state / "ips").iterdir())

    r = agent_side(vz, topo, "withdraw", key)  # suspended (migrated)
    assert r.returncode == 0, r.stderr.decode()
    assert topo.proxy_entries() == set() and routes_of(topo) == set()
    rec = record(vz, key)
    assert rec["stage"] == "withdrawn"
    assert not [e for i in rec["interfaces"] for e in i["entries"]
                if e["kind"] in ("route", "proxy-neigh")]
    assert sorted(p.name for p in (vz.state / "ips").iterdir()) == claims  # until stopped
    assert not topo.ping(topo.lan, IPS[0])
    r = agent_side(vz, topo, "withdraw", key)  # stopped (migrated) after suspended: no-op
    assert r.returncode == 0 and "removed=[]" in r.stdout.decode()

    x_believes(topo, FAKE_MAC)  # the destination might have been believed meanwhile
    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)  # resumed (migrated): it failed
    assert r.returncode == 0, r.stderr.decode()
    assert topo.proxy_entries() == set(IPS) and routes_of(topo) == set(IPS)
    assert x_macs(topo) == dict.fromkeys(IPS, uplink_mac(topo))  # re-announced
    for ip in IPS:
        assert topo.ping(topo.lan, ip), ip

    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)  # again: nothing to add ...
    assert r.returncode == 0 and "added=[]" in r.stdout.decode()
    agent_side(vz, topo, "withdraw", key)
    vz.stop("qemu", "vm1", xml, topo.host)  # ... and `stopped` removes the rest
    assert holds_nothing(topo)
    assert vz.records() == [] and not list((vz.state / "ips").iterdir())


def test_failed_incoming_migration_leaves_the_destination_clean(topo, vz, vm):
    g, xml, key = vm
    x_answers_for(topo, IPS)
    for op in ("migrate", "prepare", "start", "started"):
        agent_hook(vz, topo, op, xml)
    for op in ("stopped", "release"):  # libvirt runs the whole lifecycle on a failure
        agent_hook(vz, topo, op, xml)
    for ip in IPS:
        topo.ip(topo.lan, "addr", "del", f"{ip}/{128 if ':' in ip else 32}", "dev", "eth0")
    assert holds_nothing(topo)
    assert vz.records() == [] and not incoming_path(vz.state, key).exists()
    # publish for a domain this host no longer has (a late event) changes nothing
    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)
    assert r.returncode == 0 and r.stdout.strip() == b"None"
    assert holds_nothing(topo)


def test_without_the_agents_events_the_destination_publishes_at_started(topo, vz, vm):
    """The fallback (no agent following libvirt): the probe of the guest's own IPs is
    skipped (the source answers it), the LAN is told at `started` as for any start."""
    g, xml, key = vm
    x_answers_for(topo, IPS)
    r = vz.hook("qemu", "vm1", "migrate", xml, ns=topo.host)
    assert (r.rc, r.stdout) == (0, xml), r.stderr
    vz.start("qemu", "vm1", xml, topo.host)
    assert record(vz, key)["stage"] == "published"
    assert topo.proxy_entries() == set(IPS)
    vz.stop("qemu", "vm1", xml, topo.host)


def test_a_stale_incoming_mark_is_ignored(topo, vz, vm):
    """A mark left by a migration that failed before `started` does not make a later,
    ordinary start skip its probe or hold the LAN back."""
    g, xml, key = vm
    x_answers_for(topo, IPS[1:])
    agent_hook(vz, topo, "migrate", xml)
    old = time.time() - 3600
    os.utime(incoming_path(vz.state, key), (old, old))
    r = agent_side(vz, topo, "hook", *vz.hook_args("qemu", "vm1", "started")[1:], stdin=xml)
    assert r.returncode == 1
    assert f"IP {IPS[1]} is already in use on the LAN" in r.stderr.decode()
    assert topo.proxy_entries() == set() and vz.records() == []


BGP_IPS = ["203.0.113.150", "2001:db8:200::150"]  # off the LAN subnets: routed to the host


def test_with_bgp_the_destination_holds_its_routes_back_until_the_guest_resumes(topo, vz):
    """`neighbour_devs = "none"` (docs/bgp.md): a routing daemon exports the guest routes,
    so the ROUTE is the announcement. An incoming domain gets no route before it resumes
    (the router would prefer B while the guest still runs on A); publish adds them, the
    source's withdraw takes them, a failed migration leaves the destination clean."""
    vz.write_config('[routed]\nneighbour_devs = "none"\n')
    g = topo.add_guest("vm1", BGP_IPS, host_dev="vnet7", guest_dev="eth0")
    xml = domain_xml("vm1", driver="qemu",
                     interfaces=[routed(g.mac, BGP_IPS, target=g.host_dev)])
    key = "qemu-" + xml.split(b"<uuid>")[1].split(b"</uuid>")[0].decode()
    # Computer X reaches the guests through the host, as a BGP router would route it
    topo.ip(topo.lan, "route", "add", f"{BGP_IPS[0]}/32", "via", "198.51.100.2")
    topo.ip(topo.lan, "-6", "route", "add", f"{BGP_IPS[1]}/128", "via", "2001:db8:100::2")

    def routes() -> set[str]:
        return {ip for ip in BGP_IPS if topo.route_to(ip)}

    for op in ("migrate", "prepare", "start", "started"):
        agent_hook(vz, topo, op, xml)
    rec = record(vz, key)
    assert rec["stage"] == "incoming"
    assert routes() == set()  # nothing for the routing daemon to export yet
    assert topo.proxy_entries() == set()
    addrs = topo.ip(topo.host, "-o", "addr", "show", "dev", "vnet7")
    assert "169.254.0.1/32" in addrs and "fe80::1/128" in addrs  # the device is ready
    assert not topo.ping(topo.lan, BGP_IPS[0])

    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)  # resumed (migrated)
    assert r.returncode == 0, r.stderr.decode()
    assert record(vz, key)["stage"] == "published"
    assert routes() == set(BGP_IPS)
    for ip in BGP_IPS:
        assert "proto 247" in topo.route_to(ip), topo.route_to(ip)
        assert topo.ping(topo.lan, ip), ip
    assert topo.proxy_entries() == set()  # "none": never a proxy entry

    r = agent_side(vz, topo, "withdraw", key)  # this host is now the source: it left
    assert r.returncode == 0, r.stderr.decode()
    assert routes() == set() and record(vz, key)["stage"] == "withdrawn"
    assert not [e for i in record(vz, key)["interfaces"] for e in i["entries"]
                if "route" in e["kind"]]
    r = agent_side(vz, topo, "publish", "qemu", stdin=xml)  # the migration failed
    assert r.returncode == 0 and routes() == set(BGP_IPS)

    for op in ("stopped", "release"):
        agent_hook(vz, topo, op, xml)
    assert routes() == set() and vz.records() == []

    # a failed incoming migration: the destination's stopped/release clear the rest
    for op in ("migrate", "prepare", "start", "started", "stopped", "release"):
        agent_hook(vz, topo, op, xml)
    assert routes() == set() and vz.records() == [] and not incoming_path(vz.state, key).exists()
    addrs = topo.ip(topo.host, "-o", "addr", "show", "dev", "vnet7")
    assert "169.254.0.1" not in addrs and "fe80::1/128" not in addrs


def test_bridged_destination_accepts_its_mac_behind_the_uplink_only(topo, vz):
    """A bridged guest's destination has learned its MAC behind the uplink (the guest
    still runs on the source): `started` of the incoming domain accepts that, as an
    ordinary start would not; the same MAC behind another local guest's port refuses."""
    r = vz.run("bridge", "create", "br0", "--uplink", "enp0s5", ns=topo.host)
    assert r.rc == 0, r.stderr
    g = topo.add_bridged_guest("b9", "198.51.100.109/24", host_dev="vbb9",
                               guest_dev="netif1")
    xml = domain_xml("b9", driver="qemu", interfaces=[bridged(g.mac, target=g.host_dev)])
    topo.exec(topo.host, "bridge", "fdb", "add", g.mac, "dev", "enp0s5", "master", "static",
              check=True)
    r = vz.hook("qemu", "b9", "started", xml, ns=topo.host)  # ordinary start: refused
    assert r.rc == 1 and "is already present on br0 (behind port enp0s5)" in r.stderr
    for op in ("migrate", "prepare", "start", "started"):
        agent_hook(vz, topo, op, xml, name="b9")
    assert topo.link_master(topo.host, "vbb9") == "br0"
    for op in ("stopped", "release"):
        agent_hook(vz, topo, op, xml, name="b9")
    assert vz.records() == []
    topo.exec(topo.host, "bridge", "fdb", "del", g.mac, "dev", "enp0s5", "master")

    # another local guest already has the MAC: an incoming one is refused all the same
    other = topo.add_bridged_guest("b8", "198.51.100.108/24", host_dev="vbb8",
                                   guest_dev="netif1", mac=g.mac)
    vz.start("qemu", "b8", domain_xml("b8", driver="qemu",
                                      interfaces=[bridged(other.mac, target="vbb8")]),
             topo.host)
    topo.exec(topo.host, "bridge", "fdb", "replace", g.mac, "dev", "vbb8", "master",
              "static", check=True)
    agent_hook(vz, topo, "migrate", xml, name="b9")
    r = agent_side(vz, topo, "hook", *vz.hook_args("qemu", "b9", "started")[1:], stdin=xml)
    assert r.returncode == 1, r.stderr.decode()
    assert "is already present on br0 (behind port vbb8)" in r.stderr.decode()
    assert topo.link_master(topo.host, "vbb9") is None
