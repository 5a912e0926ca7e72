"""libvirtd restarted while guests run: `reconnect` runs and the wiring is whole.

With the agent following libvirt's events the shim leaves `reconnect` to it (the agent
reconciles every running guest once libvirtd serves again); without the agent the hook
re-applies before libvirtd serves.
"""

from __future__ import annotations

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.agent import reconciles
from vzlibvirt.contract import following_path
from vzlibvirt.lab import daemon
from vzlibvirt.lab.guests import SEED_CONTAINERS, SEED_VMS


def _reconciled(lab) -> dict[str, int]:
    """How many reconciles of each driver's guests the agent has logged."""
    text = lab.paths.agent_log.read_text()
    return {driver: len(reconciles(text, driver)) for driver in ("lxc", "qemu")}


def _following(lab, driver: str) -> str:
    try:
        return following_path(lab.paths.state, driver).read_text().strip()
    except FileNotFoundError:
        return ""


def test_libvirtd_restart_keeps_wiring(lab, run_guests):
    ct, vm = SEED_CONTAINERS[0], SEED_VMS[0]
    run_guests(ct, vm)
    assert lab.wait_console(vm, "VZLAB-READY", 120)
    agent = str(lab.agent_pid())
    for driver in ("lxc", "qemu"):  # the agent follows both drivers' events
        assert wait_for(lambda d=driver: _following(lab, d) == agent, 10), driver
    routes, proxy = host_routes(lab), proxies(lab)
    old_pid = daemon.read_pid(lab.paths, "libvirtd")
    reconciled = _reconciled(lab)
    # damage the container's wiring: the agent's reconcile must make it whole again
    lab.in_host(["ip", "route", "del", ct.ips[0]])
    calls_before = len(lab.hook_calls())

    lab.restart_libvirtd()

    assert daemon.read_pid(lab.paths, "libvirtd") not in (None, old_pid)
    new_calls = lab.hook_calls()[calls_before:]
    for g in (ct, vm):
        assert any(f" {g.name} reconnect begin" in c for c in new_calls), new_calls
        assert lab.virsh(g.driver, "domstate", g.name).stdout.strip() == "running"
    # one reconcile per driver, once the agent is connected again
    assert wait_for(lambda: all(n > reconciled[d] for d, n in _reconciled(lab).items()), 15), \
        (reconciled, _reconciled(lab))
    assert wait_for(lambda: host_routes(lab) == routes, 10), host_routes(lab)
    assert proxies(lab) == proxy
    for g in (ct, vm):
        assert wait_for(lambda ip=g.ips[0]: lab.ping_from_x(ip), 15), f"X cannot reach {g.name}"


def test_without_the_agent_reconnect_rewires_before_libvirtd_serves(lab, run_guests):
    ct = SEED_CONTAINERS[0]
    lab.stop_agent()  # it stops following: `reconnect` reaches the hook again
    try:
        assert _following(lab, "lxc") == ""
        run_guests(ct)
        routes, proxy = host_routes(lab), proxies(lab)
        lab.in_host(["ip", "route", "del", ct.ips[0]])
        assert ct.ips[0] not in host_routes(lab)

        lab.restart_libvirtd()

        # no agent, no resync: only the hook can have put the route back, and it ran
        # before libvirtd answered
        assert host_routes(lab) == routes
        assert proxies(lab) == proxy
        assert wait_for(lambda: lab.ping_from_x(ct.ips[0]), 15)
    finally:
        lab.start_agent()
