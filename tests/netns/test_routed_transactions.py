"""Idempotency, rollback and crash consistency of routed wiring on the real kernel.

The engine numbers its steps (vzlibvirt.faults): the tests first record the steps of a
clean wire and unwire, then fail or SIGKILL the hook at each one.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.netns.probes import host_snapshot
from vzlibvirt.lab.domxml import domain_xml, routed

pytestmark = pytest.mark.netns

IPS = ["198.51.100.101", "2001:db8:100::101"]


@pytest.fixture
def guest(topo, vz):
    g = topo.add_guest("ct1", IPS)
    xml = domain_xml("ct1", interfaces=[routed(g.mac, IPS, target=g.host_dev, native=True)])
    return g, xml


def _not_kernel(routes) -> list[str]:
    lines = routes.splitlines() if isinstance(routes, str) else routes
    return [r for r in lines if "proto kernel" not in r and not r.startswith("anycast")]


def _steps(vz, topo, xml, op, tmp_path) -> list[str]:
    trace = tmp_path / f"trace-{op}"
    r = vz.hook("lxc", "ct1", op, xml, ns=topo.host, VZLIBVIRT_FAULT_TRACE=str(trace))
    assert r.rc == 0, r.stderr
    return trace.read_text().splitlines()


def test_every_operation_twice(topo, vz, guest):
    g, xml = guest
    before = host_snapshot(topo)
    for op in ("prepare", "prepare", "start", "start", "started", "started"):
        r = vz.hook("lxc", "ct1", op, xml, ns=topo.host)
        assert r.rc == 0 and r.stderr == "", (op, r.stderr)
    wired = host_snapshot(topo)
    record = json.loads(vz.records()[0].read_text())
    assert record["phase"] == "wired"
    r = vz.hook("lxc", "ct1", "reconnect", xml, ns=topo.host)
    assert r.rc == 0, r.stderr
    assert host_snapshot(topo) == wired
    assert topo.ping(topo.lan, IPS[0]) and topo.ping(topo.lan, IPS[1])
    for op in ("stopped", "stopped", "release", "release"):
        r = vz.hook("lxc", "ct1", op, xml, ns=topo.host)
        assert r.rc == 0 and r.stderr == "", (op, r.stderr)
    after = host_snapshot(topo)
    # device settings, link state and host-wide forwarding stay (documented), with the
    # kernel's own routes that follow from them; all else is as before
    for key in ("routes4", "routes6", "proxy"):
        assert _not_kernel(after[key]) == _not_kernel(before[key]), key
    assert "169.254.0.1" not in after["addrs"] and "fe80::1/128" not in after["addrs"]
    assert vz.records() == []


def test_failure_at_each_wiring_step_leaves_host_as_before(topo, vz, guest, tmp_path):
    g, xml = guest
    before = host_snapshot(topo)
    vz.start("lxc", "ct1", xml, topo.host)
    vz.stop("lxc", "ct1", xml, topo.host)
    # the stop left device settings on; every attempt starts from this same state
    baseline = host_snapshot(topo)
    steps = _steps(vz, topo, xml, "started", tmp_path)
    vz.stop("lxc", "ct1", xml, topo.host)
    assert host_snapshot(topo) == baseline
    assert len(steps) >= 8, steps
    for n, step in enumerate(steps, start=1):
        r = vz.hook("lxc", "ct1", "started", xml, ns=topo.host, VZLIBVIRT_FAULT=f"fail:{n}")
        assert r.rc == 1, (step, r.stderr)
        assert r.stderr.count("\n") == 1 and "injected failure" in r.stderr
        assert "domain 'ct1'" in r.stderr
        assert host_snapshot(topo) == baseline, f"host changed after failing at {step}"
        assert vz.records() == [], step
    assert before["routes4"] == baseline["routes4"] and before["proxy"] == baseline["proxy"]


def test_failure_at_each_step_on_a_fresh_host(topo, vz, guest, tmp_path):
    """On a host that never had a guest, wiring also turns forwarding and proxy settings
    on; a failure at any step turns every one of them back."""
    g, xml = guest
    before = host_snapshot(topo)
    steps = _steps(vz, topo, xml, "started", tmp_path)
    assert len(steps) >= 19, steps
    for n, step in enumerate(steps, start=1):
        topo.close()
        shutil.rmtree(vz.state, ignore_errors=True)
        topo.up()
        topo.guests.clear()
        topo.add_guest("ct1", IPS)
        before = host_snapshot(topo)
        r = vz.hook("lxc", "ct1", "started", xml, ns=topo.host, VZLIBVIRT_FAULT=f"fail:{n}")
        assert r.rc == 1 and "injected failure" in r.stderr, step
        assert host_snapshot(topo) == before, f"host changed after failing at {step}"
        assert vz.records() == []


def _desired_check(topo, vz, g):
    assert topo.proxy_entries() == {*IPS, "198.51.100.150"}
    assert topo.route_to(IPS[0]) and topo.route_to(IPS[1])
    assert topo.ping(topo.lan, IPS[0]) and topo.ping(topo.lan, IPS[1])
    assert len(vz.records()) == 1


def test_sigkill_at_each_step_then_next_hook_heals(topo, vz, guest, tmp_path):
    g, xml = guest
    topo.ip(topo.host, "neigh", "add", "proxy", "198.51.100.150", "dev", "enp0s5")
    vz.start("lxc", "ct1", xml, topo.host)  # settings on, so every round has the same steps
    vz.stop("lxc", "ct1", xml, topo.host)
    wire_steps = _steps(vz, topo, xml, "started", tmp_path)
    unwire_steps = _steps(vz, topo, xml, "stopped", tmp_path)
    clean = host_snapshot(topo)
    assert clean["proxy"] == ["198.51.100.150 dev enp0s5 proxy "]
    for n, step in enumerate(wire_steps, start=1):
        r = vz.hook("lxc", "ct1", "started", xml, ns=topo.host, VZLIBVIRT_FAULT=f"kill:{n}")
        assert r.rc == -9, (step, r.rc, r.stderr)
        # a guest kept running is made whole by the next re-apply (reconnect, reconcile)
        r = vz.hook("lxc", "ct1", "reconnect", xml, ns=topo.host)
        assert r.rc == 0, (step, r.stderr)
        _desired_check(topo, vz, g)
        # a start that libvirt aborts is followed by stopped + release: all of it goes
        vz.stop("lxc", "ct1", xml, topo.host)
        snap = host_snapshot(topo)
        assert snap["proxy"] == clean["proxy"] and snap["routes4"] == clean["routes4"], step
        assert snap["routes6"] == clean["routes6"], step
        # and straight from the killed wiring to libvirt's stop sequence
        r = vz.hook("lxc", "ct1", "started", xml, ns=topo.host, VZLIBVIRT_FAULT=f"kill:{n}")
        assert r.rc == -9, (step, r.rc, r.stderr)
        vz.stop("lxc", "ct1", xml, topo.host)
        assert host_snapshot(topo) == snap, step
        assert vz.records() == []
    vz.start("lxc", "ct1", xml, topo.host)
    for n, step in enumerate(unwire_steps, start=1):
        r = vz.hook("lxc", "ct1", "stopped", xml, ns=topo.host, VZLIBVIRT_FAULT=f"kill:{n}")
        assert r.rc == -9, (step, r.rc)
        vz.stop("lxc", "ct1", xml, topo.host)  # release (and a repeated stopped) finish it
        snap = host_snapshot(topo)
        assert snap["proxy"] == clean["proxy"], step
        assert snap["routes4"] == clean["routes4"] and snap["routes6"] == clean["routes6"]
        assert vz.records() == []
        vz.start("lxc", "ct1", xml, topo.host)
    _desired_check(topo, vz, g)
