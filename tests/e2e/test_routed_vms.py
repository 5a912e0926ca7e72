"""Seed 5.2.2.2 on a real libvirtd: two host-routed VMs under TCG (KVM if VZLAB_KVM=1)."""

from __future__ import annotations

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.lab.guests import SEED_VMS
from vzlibvirt.lab.settings import NEIGH_DEV


def test_two_routed_vms(lab, run_guests):
    run_guests(*SEED_VMS)
    routes, proxy = host_routes(lab), proxies(lab)
    for g in SEED_VMS:
        ip = g.ips[0]
        assert routes.get(ip) == lab.host_dev(g)
        assert (ip, NEIGH_DEV) in proxy
    for g in SEED_VMS:
        assert lab.wait_console(g, "VZLAB-READY", 120), f"{g.name} did not boot"
        # the guest's init pings 169.254.0.1 every 2 s and logs the result on its console
        assert lab.wait_console(g, "VZLAB-GW-OK", 30), f"{g.name} cannot reach 169.254.0.1"
        assert wait_for(lambda ip=g.ips[0]: lab.ping_from_x(ip), 20), f"X cannot reach {g.name}"
