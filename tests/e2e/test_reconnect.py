"""libvirtd restarted while guests run: `reconnect` runs and the wiring is whole."""

from __future__ import annotations

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.lab import daemon
from vzlibvirt.lab.guests import SEED_CONTAINERS, SEED_VMS


def test_libvirtd_restart_keeps_wiring(lab, run_guests):
    ct, vm = SEED_CONTAINERS[0], SEED_VMS[0]
    run_guests(ct, vm)
    assert lab.wait_console(vm, "VZLAB-READY", 120)
    routes, proxy = host_routes(lab), proxies(lab)
    old_pid = daemon.read_pid(lab.paths, "libvirtd")
    # damage the container's wiring: reconnect must make it whole again
    lab.in_host(["ip", "route", "del", ct.ips[0]])
    calls_before = len(lab.hook_calls())

    lab.restart_libvirtd()

    assert daemon.read_pid(lab.paths, "libvirtd") not in (None, old_pid)
    new_calls = lab.hook_calls()[calls_before:]
    for g in (ct, vm):
        assert any(f" {g.name} reconnect begin" in c for c in new_calls), new_calls
        assert lab.virsh(g.driver, "domstate", g.name).stdout.strip() == "running"
    assert wait_for(lambda: host_routes(lab) == routes, 10), host_routes(lab)
    assert proxies(lab) == proxy
    for g in (ct, vm):
        assert wait_for(lambda ip=g.ips[0]: lab.ping_from_x(ip), 15), f"X cannot reach {g.name}"
