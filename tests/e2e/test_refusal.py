"""A bad vz config makes `virsh start` fail with our one line, and nothing is applied."""

from __future__ import annotations

from tests.e2e.helpers import host_addresses, host_routes, proxies
from vzlibvirt.lab.guests import Guest


def test_bad_vz_config_refused(lab, run_guests):
    before = (host_routes(lab), proxies(lab), host_addresses(lab))
    bad = Guest("ctbad", "ct", "52:54:00:aa:00:0e", ("198.51.100.107",),
                extra_vz="<vz:ip address='224.0.0.7'/>")  # multicast: not a host address
    (result,) = run_guests(bad, check=False)
    assert result.returncode != 0
    err = " ".join(result.stderr.split())
    assert "vzlibvirt: domain 'ctbad'" in err, err
    assert "52:54:00:aa:00:0e" in err and "224.0.0.7" in err, err
    assert lab.virsh("lxc", "domstate", "ctbad").stdout.strip() == "shut off"
    assert (host_routes(lab), proxies(lab), host_addresses(lab)) == before
    recorded = [p for p in lab.paths.state.rglob("*.json") if "ctbad" in p.read_text()]
    assert not recorded, f"state recorded for a refused domain: {recorded}"
