"""Issue 4 item 4: the lab has br0 over its uplink from `up` on, and the demo shows the
seed's four figures (routed and bridged containers, routed and bridged VMs)."""

from __future__ import annotations

import json

from tests.e2e.helpers import host_addresses, host_routes, proxies, wait_for
from vzlibvirt.lab import guests
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.demo import demo_guests, run_demo


def bridge_ports(lab) -> set[str]:
    out = lab.in_host(["ip", "-j", "link", "show", "master", S.BRIDGE]).stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


def test_lab_br0_holds_the_uplink_and_routed_guests_answer_through_it(lab, run_guests):
    assert bridge_ports(lab) == {S.UPLINK}
    addrs = host_addresses(lab)
    assert (S.BRIDGE, S.HOST_IP4.split("/")[0]) in addrs
    assert not any(dev == S.UPLINK and ip.startswith("198.51.100.") for dev, ip in addrs)
    assert (lab.paths.state / "bridges" / f"{S.BRIDGE}.json").exists()
    ct = guests.SEED_CONTAINERS[0]
    run_guests(ct)
    assert (ct.ips[0], S.BRIDGE) in proxies(lab)
    assert host_routes(lab).get(ct.ips[0]) == lab.host_dev(ct)
    assert wait_for(lambda: lab.ping_from_x(ct.ips[0]), 10)


def test_demo_shows_the_four_seed_figures(lab, capsys):
    rc = run_demo(lab, keep=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "DEMO PASSED" in out
    chosen = demo_guests()
    kinds = {(g.kind, g.mode) for g in chosen}
    assert kinds == {("ct", "routed"), ("ct", "bridged"), ("vm", "routed"), ("vm", "bridged")}
    summary = out.split("== summary")[1].split("== stopping")[0]
    for g in chosen:
        line = next(ln for ln in summary.splitlines() if ln.startswith(g.name + " "))
        assert g.mode in line and g.ips[0] in line and " yes " in line, line
    # Computer X holds the bridged guests' own MACs, and the host's for routed ones
    x_table = out.split("== Computer X: # arp -n")[1].split("== summary")[0]
    for g in chosen:
        line = next(ln for ln in x_table.splitlines() if ln.startswith(g.ips[0] + " "))
        if g.mode == "bridged":
            assert g.mac in line and line.rstrip().endswith(g.name), line
        else:
            assert "lab host (br0)" in line, line
    # everything stopped: no guests, no proxy entries or guest routes, only the uplink on br0
    assert not lab.domains("lxc") and not lab.domains("qemu")
    assert not proxies(lab)
    assert not any(g.ips[0] in host_routes(lab) for g in chosen)
    assert bridge_ports(lab) == {S.UPLINK}
