"""The lab runs vzlibvirt's resident agent; with it stopped the hooks run the engine
in-process, and the result on the host must be the same."""

from __future__ import annotations

from tests.e2e.helpers import host_routes, proxies, wait_for
from vzlibvirt.lab.guests import SEED_CONTAINERS
from vzlibvirt.lab.settings import NEIGH_DEV


def test_hooks_work_with_and_without_agent(lab, run_guests):
    ct = SEED_CONTAINERS[2]
    assert lab.agent_pid() is not None, "the lab should run the agent"
    lab.stop_agent()
    try:
        run_guests(ct)
        ip = ct.ips[0]
        assert host_routes(lab).get(ip) == lab.host_dev(ct)
        assert (ip, NEIGH_DEV) in proxies(lab)
        assert wait_for(lambda: lab.ping_from_x(ip), 10)
        lab.destroy(ct)
        assert ip not in host_routes(lab) and (ip, NEIGH_DEV) not in proxies(lab)
    finally:
        lab.start_agent()
    lab.start(ct)  # and through the agent again
    assert host_routes(lab).get(ct.ips[0]) == lab.host_dev(ct)
    assert wait_for(lambda: lab.ping_from_x(ct.ips[0]), 10)
