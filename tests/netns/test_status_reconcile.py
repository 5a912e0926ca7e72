"""`status` shows drift; `reconcile` heals it and forgets domains that are gone.

reconcile() takes the live XML per driver (what the libvirt API returns), so these tests
feed it directly inside the host namespace; the libvirt-API path runs in tests/e2e.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vzlibvirt.lab.domxml import domain_xml, routed

pytestmark = pytest.mark.netns

RECONCILE = """
import json, sys
from vzlibvirt.config import load_config
from vzlibvirt.netlink import Netlink
from vzlibvirt.reconcile import reconcile
xmls = json.load(sys.stdin)
with Netlink() as nl:
    r = reconcile(load_config(), {d: [x.encode() for x in v] for d, v in xmls.items()}, nl)
print(json.dumps({"rewired": r.rewired, "removed": r.removed, "failed": r.failed,
                  "checked": r.checked}))
"""


def _reconcile(topo, vz, running: dict[str, list[bytes]]) -> dict:
    payload = json.dumps({d: [x.decode() for x in v] for d, v in running.items()}).encode()
    p = subprocess.run(["ip", "netns", "exec", topo.host, sys.executable, "-c", RECONCILE],
                       input=payload, capture_output=True, env=vz.env(), timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def _status(topo, vz) -> list[dict]:
    r = vz.run("status", "--json", ns=topo.host)
    assert r.rc == 0, r.stderr
    return json.loads(r.stdout)


def test_status_marks_drift_and_reconcile_heals(topo, vz):
    g1 = topo.add_guest("ct1", ["198.51.100.101"])
    g2 = topo.add_guest("ct2", ["198.51.100.102"])
    x1 = domain_xml("ct1", interfaces=[routed(g1.mac, g1.ips, target=g1.host_dev, native=True)])
    x2 = domain_xml("ct2", interfaces=[routed(g2.mac, g2.ips, target=g2.host_dev, native=True)])
    vz.start("lxc", "ct1", x1, topo.host)
    vz.start("lxc", "ct2", x2, topo.host)
    rows = _status(topo, vz)
    assert {r["domain"] for r in rows} == {"ct1", "ct2"} and all(r["ok"] for r in rows)
    assert rows[0]["neighbour_devs"] == ["enp0s5"]

    # drift: someone deletes ct1's route and proxy entry by hand
    topo.ip(topo.host, "route", "del", "198.51.100.101/32")
    topo.ip(topo.host, "neigh", "del", "proxy", "198.51.100.101", "dev", "enp0s5")
    rows = {r["domain"]: r for r in _status(topo, vz)}
    assert not rows["ct1"]["ok"] and rows["ct2"]["ok"]
    missing = {e["entry"] for e in rows["ct1"]["entries"] if not e["present"]}
    assert missing == {"route 198.51.100.101/32 dev vnet0", "proxy arp 198.51.100.101 on enp0s5"}
    text = vz.run("status", ns=topo.host)
    assert "DRIFT (2 missing)" in text.stdout.decode()

    # ct2 went away while nobody listened (libvirtd down): only ct1 is running
    report = _reconcile(topo, vz, {"lxc": [x1]})
    assert set(report["rewired"]["ct1"]) == missing
    assert "ct2" in report["removed"] and report["failed"] == {}
    assert topo.proxy_entries() == {"198.51.100.101"}
    assert topo.route_to("198.51.100.102") is None
    assert topo.ping(topo.lan, "198.51.100.101")
    assert [r["domain"] for r in _status(topo, vz)] == ["ct1"]
    # a second reconcile has nothing to do
    report = _reconcile(topo, vz, {"lxc": [x1]})
    assert report["rewired"] == {} and report["removed"] == {} and report["checked"] == 1


def test_reconcile_leaves_other_drivers_alone(topo, vz):
    g = topo.add_guest("vm1", ["198.51.100.201"], guest_dev="eth0")
    xml = domain_xml("vm1", driver="qemu", interfaces=[routed(g.mac, g.ips, target=g.host_dev)])
    vz.start("qemu", "vm1", xml, topo.host)
    report = _reconcile(topo, vz, {"lxc": []})  # only the LXC driver was listed
    assert report["removed"] == {}
    assert topo.proxy_entries() == {"198.51.100.201"}


def test_uplink_recreated_is_restored_by_reconcile(topo, vz):
    g = topo.add_guest("ct1", ["198.51.100.101"])
    xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev, native=True)])
    vz.start("lxc", "ct1", xml, topo.host)
    topo.ip(topo.host, "link", "del", "enp0s5")
    topo.ip(topo.host, "link", "add", "enp0s5", "type", "veth", "peer", "name", "eth0",
            "netns", topo.lan)
    topo.ip(topo.host, "addr", "add", "198.51.100.2/24", "dev", "enp0s5")
    topo.ip(topo.lan, "addr", "add", "198.51.100.10/24", "dev", "eth0")
    topo.ip(topo.host, "link", "set", "enp0s5", "up")
    topo.ip(topo.lan, "link", "set", "eth0", "up")
    assert topo.proxy_entries() == set()
    report = _reconcile(topo, vz, {"lxc": [xml]})
    assert "proxy arp 198.51.100.101 on enp0s5" in report["rewired"]["ct1"]
    assert topo.proxy_entries() == {"198.51.100.101"}
    assert topo.ping(topo.lan, "198.51.100.101")
    rows = _status(topo, vz)
    assert rows[0]["ok"]
