"""`vzlibvirt bridge create/delete` on the real kernel, in the test's host namespace.

The uplink carries IPv4 (primary, secondary, labelled), IPv6 (one with a flag past the
header's 8 bits), a default route for each family, an on-link IPv6 route, routes in
other tables (one numbered past 255) and a non-default MTU, so that "back exactly"
covers every kind of thing the command moves.
"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.netns


@pytest.fixture
def uplink(topo):
    h = topo.host
    topo.ip(h, "link", "set", "enp0s5", "mtu", "1400")
    topo.ip(h, "addr", "add", "198.51.100.3/24", "dev", "enp0s5")
    topo.ip(h, "addr", "add", "203.0.113.5/24", "brd", "+", "dev", "enp0s5",
            "label", "enp0s5:x")
    topo.ip(h, "route", "add", "default", "via", "198.51.100.1")
    topo.ip(h, "route", "add", "203.0.113.128/25", "via", "198.51.100.9", "table", "100",
            "metric", "5")
    topo.ip(h, "-6", "route", "add", "default", "via", "2001:db8:100::1")
    topo.ip(h, "-6", "route", "add", "2001:db8:200::/48", "via", "fe80::1", "dev", "enp0s5",
            "onlink")
    topo.ip(h, "-6", "addr", "add", "2001:db8:300::5/64", "dev", "enp0s5", "noprefixroute",
            "nodad")
    topo.ip(h, "route", "add", "203.0.113.64/26", "via", "198.51.100.9", "table", "1000",
            "proto", "static")
    return "enp0s5"


def snapshot(topo) -> dict:
    """Addresses, routes and links of the host namespace, in comparable form."""
    h = topo.host
    addrs = re.sub(r"\s+(tentative|valid_lft.*)", "", topo.ip(h, "-o", "addr", "show"))
    links = []
    for line in topo.ip(h, "-o", "link", "show").splitlines():
        f = line.split()
        links.append((f[1].rstrip(":").split("@")[0], f[f.index("mtu") + 1],
                      f[f.index("master") + 1] if "master" in f else None,
                      f[f.index("link/ether") + 1] if "link/ether" in f else None))
    return {
        "addrs": sorted(re.sub(r"^\d+:\s+", "", a) for a in addrs.splitlines()),
        "routes4": topo.ip(h, "-4", "route", "show", "table", "all"),
        "routes6": topo.ip(h, "-6", "route", "show", "table", "all"),
        "links": sorted(links),
    }


def _link(topo, dev: str) -> dict:
    return json.loads(topo.ip(topo.host, "-j", "-d", "link", "show", dev))[0]


def test_create_then_delete_restores_exactly(topo, vz, uplink):
    before = snapshot(topo)
    up = _link(topo, "enp0s5")

    r = vz.run("bridge", "create", "br0", "--uplink", "enp0s5", ns=topo.host)
    assert r.rc == 0, r.stderr
    br = _link(topo, "br0")
    assert br["mtu"] == 1400 and br["address"] == up["address"]
    assert br["linkinfo"]["info_data"]["stp_state"] == 0
    assert topo.link_master(topo.host, "enp0s5") == "br0"
    addrs = topo.ip(topo.host, "-o", "addr", "show", "dev", "br0")
    for a in ("198.51.100.2/24", "198.51.100.3/24", "203.0.113.5/24", "2001:db8:100::2/64"):
        assert a in addrs
    assert "br0:x" in addrs  # the label follows the device name
    assert "198.51.100.2" not in topo.ip(topo.host, "-o", "addr", "show", "dev", "enp0s5")
    assert "default via 198.51.100.1 dev br0" in topo.ip(topo.host, "route")
    assert "default via 2001:db8:100::1 dev br0" in topo.ip(topo.host, "-6", "route")
    assert "dev br0" in topo.ip(topo.host, "route", "show", "table", "100")
    assert "dev br0 proto static" in topo.ip(topo.host, "route", "show", "table", "1000")
    six = topo.ip(topo.host, "-6", "-o", "addr", "show", "dev", "br0")
    assert "2001:db8:300::5/64" in six and "noprefixroute" in six
    assert topo.ping(topo.lan, "198.51.100.2") and topo.ping(topo.lan, "2001:db8:100::2")

    r = vz.run("bridge", "delete", "br0", ns=topo.host)
    assert r.rc == 0, r.stderr
    assert snapshot(topo) == before
    assert topo.ping(topo.lan, "198.51.100.2")


def test_idempotent(topo, vz, uplink):
    before = snapshot(topo)
    for _ in range(2):
        r = vz.run("bridge", "create", "br0", "--uplink", "enp0s5", ns=topo.host)
        assert r.rc == 0, r.stderr
    for _ in range(2):
        r = vz.run("bridge", "delete", "br0", ns=topo.host)
        assert r.rc == 0, r.stderr
    assert snapshot(topo) == before
    assert "nothing to do" in r.stdout.decode()


def test_guests_only_bridge(topo, vz):
    before = snapshot(topo)
    r = vz.run("bridge", "create", "br1", ns=topo.host)
    assert r.rc == 0, r.stderr
    assert _link(topo, "br1")["linkinfo"]["info_kind"] == "bridge"
    assert topo.link_master(topo.host, "enp0s5") is None
    assert vz.run("bridge", "delete", "br1", ns=topo.host).rc == 0
    assert snapshot(topo) == before


def _step_count(topo, vz, args, tmp_path) -> int:
    trace = tmp_path / f"trace-{args[1]}"
    r = vz.run(*args, ns=topo.host, VZLIBVIRT_FAULT_TRACE=str(trace))
    assert r.rc == 0, r.stderr
    return len(trace.read_text().splitlines())


def test_failure_at_every_step_leaves_uplink_untouched(topo, vz, uplink, tmp_path):
    create = ("bridge", "create", "br0", "--uplink", "enp0s5")
    delete = ("bridge", "delete", "br0")
    before = snapshot(topo)
    n = _step_count(topo, vz, create, tmp_path)
    created = snapshot(topo)
    m = _step_count(topo, vz, delete, tmp_path)
    assert snapshot(topo) == before and n > 5 and m > 5

    for step in range(1, n + 1):
        r = vz.run(*create, ns=topo.host, VZLIBVIRT_FAULT=f"fail:{step}")
        assert r.rc == 1 and "injected failure" in r.stderr, (step, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
        assert snapshot(topo) == before, f"create failed at step {step}: host changed"
        assert not (vz.state / "bridges" / "br0.json").exists()

    assert vz.run(*create, ns=topo.host).rc == 0
    assert snapshot(topo) == created
    for step in range(1, m + 1):
        r = vz.run(*delete, ns=topo.host, VZLIBVIRT_FAULT=f"fail:{step}")
        assert r.rc == 1 and "injected failure" in r.stderr, (step, r.stderr)
        assert snapshot(topo) == created, f"delete failed at step {step}: host changed"
    assert vz.run(*delete, ns=topo.host).rc == 0
    assert snapshot(topo) == before


def test_crash_midway_is_undone_by_delete(topo, vz, uplink, tmp_path):
    before = snapshot(topo)
    r = vz.run("bridge", "create", "br0", "--uplink", "enp0s5", ns=topo.host,
               VZLIBVIRT_FAULT="kill:8")
    assert r.rc != 0
    assert snapshot(topo) != before  # killed: nothing could roll back
    r = vz.run("bridge", "delete", "br0", ns=topo.host)
    assert r.rc == 0, r.stderr
    assert snapshot(topo) == before


def _refused(r, *words):
    assert r.rc == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]


def test_refusals(topo, vz, uplink):
    before = snapshot(topo)
    run = lambda *a: vz.run("bridge", *a, ns=topo.host)  # noqa: E731
    _refused(run("create", "br0", "--uplink", "nope0"), "uplink nope0 does not exist")
    _refused(run("create", "bad/name"), "not a valid interface name")
    assert snapshot(topo) == before
    topo.ip(topo.host, "route", "add", "203.0.113.192/26", "nexthop", "via", "198.51.100.1",
            "dev", "enp0s5", "nexthop", "via", "198.51.100.9", "dev", "enp0s5")
    multipath = snapshot(topo)
    _refused(run("create", "br0", "--uplink", "enp0s5"),
             "multipath route to 203.0.113.192/26")
    assert snapshot(topo) == multipath
    topo.ip(topo.host, "route", "del", "203.0.113.192/26")

    assert run("create", "br0", "--uplink", "enp0s5").rc == 0
    created = snapshot(topo)
    _refused(run("create", "br1", "--uplink", "enp0s5"), "already enslaved to br0")
    topo.ip(topo.host, "link", "add", "up2", "type", "veth", "peer", "name", "up2p")
    _refused(run("create", "br0", "--uplink", "up2"), "exists with another uplink")
    _refused(run("create", "br0"), "exists with uplink enp0s5")
    # a guest port still on the bridge: delete refuses and changes nothing
    topo.ip(topo.host, "link", "set", "up2", "master", "br0")
    mid = snapshot(topo)
    _refused(run("delete", "br0"), "still has ports up2")
    assert snapshot(topo) == mid
    topo.ip(topo.host, "link", "set", "up2", "nomaster")
    topo.ip(topo.host, "link", "del", "up2")
    assert snapshot(topo) == created

    # a bridge someone else made is left alone
    topo.ip(topo.host, "link", "add", "brx", "type", "bridge")
    _refused(run("delete", "brx"), "not made by 'vzlibvirt bridge create'")
    _refused(run("create", "brx", "--uplink", "enp0s5"), "brx already exists")
    assert run("delete", "br0").rc == 0
    topo.ip(topo.host, "link", "del", "brx")
    assert snapshot(topo) == before
