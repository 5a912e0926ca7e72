"""Seed 5.2.1.1 on a real libvirtd: host-routed containers, and a dual-stack one."""

from __future__ import annotations

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.lab.guests import SEED_CONTAINERS, Guest
from vzlibvirt.lab.settings import NEIGH_DEV, X_IP4, X_IP6


def test_three_routed_containers(lab, run_guests):
    run_guests(*SEED_CONTAINERS)
    devs = {g.name: lab.host_dev(g) for g in SEED_CONTAINERS}
    routes, proxy = host_routes(lab), proxies(lab)
    for g in SEED_CONTAINERS:
        ip = g.ips[0]
        assert routes.get(ip) == devs[g.name], f"route for {ip}: {routes}"
        assert (ip, NEIGH_DEV) in proxy
        assert lab.ping_from_x(ip), f"Computer X cannot reach {g.name} ({ip})"
    # the containers reach each other and Computer X through the host
    for g in SEED_CONTAINERS:
        for target in [o.ips[0] for o in SEED_CONTAINERS if o != g] + [X_IP4]:
            r = lab.in_container(g, ["ping", "-c", "1", "-W", "2", "-n", target], check=False)
            assert r.returncode == 0, f"{g.name} cannot reach {target}: {r.stdout}"

    # destroying one removes exactly its route and proxy entry
    ct2 = SEED_CONTAINERS[1]
    lab.destroy(ct2)
    routes2, proxy2 = host_routes(lab), proxies(lab)
    assert ct2.ips[0] not in routes2
    assert (ct2.ips[0], NEIGH_DEV) not in proxy2
    assert {k: v for k, v in routes.items() if k != ct2.ips[0]} == routes2
    assert proxy - {(ct2.ips[0], NEIGH_DEV)} == proxy2
    assert not lab.ping_from_x(ct2.ips[0])
    # and it starts again
    lab.start(ct2)
    assert host_routes(lab).get(ct2.ips[0]) == lab.host_dev(ct2)
    assert (ct2.ips[0], NEIGH_DEV) in proxies(lab)
    assert wait_for(lambda: lab.ping_from_x(ct2.ips[0]), 10)


def test_container_ipv4_and_ipv6(lab, run_guests):
    g = Guest("ct6", "ct", "52:54:00:aa:00:06", ("198.51.100.106", "2001:db8:100::106"))
    run_guests(g)
    routes = host_routes(lab)
    dev = lab.host_dev(g)
    assert routes.get("198.51.100.106") == dev and routes.get("2001:db8:100::106") == dev
    assert {("198.51.100.106", NEIGH_DEV), ("2001:db8:100::106", NEIGH_DEV)} <= proxies(lab)
    assert lab.ping_from_x("198.51.100.106")
    # IPv6 needs the container's route via fe80::1 and proxy NDP: allow DAD a moment
    assert wait_for(lambda: lab.ping_from_x("2001:db8:100::106"), 15), "no IPv6 answer"
    r = lab.in_container(g, ["ping", "-6", "-c", "1", "-W", "2", "-n", X_IP6], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
