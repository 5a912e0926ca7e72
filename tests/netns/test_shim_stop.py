"""The installed shim on the real kernel: stop operations whose XML has no final newline.

libvirt ends its domain XML with a newline, but the shim reads the <uuid> with the shell
and must not depend on that: XML on one line without one still unwires the domain.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.xmlgen import domain_xml, routed

pytestmark = pytest.mark.netns
LIBVIRT_ENV = {"PATH": "/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C"}
IP = "198.51.100.101"


def test_shim_unwires_a_domain_whose_xml_is_one_line_without_a_final_newline(topo, vz):
    # no agent listens on the configured socket: the engine runs in the hook's process
    vz.write_config(f'[agent]\nsocket = "{vz.root / "agent.sock"}"\n'
                    '[routed]\nneighbour_devs = ["enp0s5"]\n')
    r = vz.run("install-hooks", "--hooks-dir", str(vz.root / "hooks"), "--config",
               str(vz.config))
    assert r.rc == 0, r.stderr
    g = topo.add_guest("ct1", [IP])
    xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev, native=True)])
    one_line = xml.replace(b"\n", b"")
    assert b"<uuid>" in one_line and not one_line.endswith(b"\n")

    def shim(op: str, sub: str, data: bytes) -> subprocess.CompletedProcess:
        path = vz.root / "hooks" / "lxc.d" / "50-vzlibvirt"
        return subprocess.run(["ip", "netns", "exec", topo.host, str(path), "ct1", op, sub,
                               "-"], input=data, capture_output=True, env=LIBVIRT_ENV,
                              timeout=60)

    for op in ("prepare", "start", "started"):
        r = shim(op, "begin", xml)
        assert (r.returncode, r.stderr) == (0, b""), op
    assert topo.proxy_entries() == {IP} and topo.route_to(IP) is not None
    assert "169.254.0.1/32" in topo.ip(topo.host, "addr", "show", g.host_dev)
    assert len(vz.records()) == 1

    for op in ("stopped", "release"):
        r = shim(op, "end", one_line)
        assert (r.returncode, r.stderr) == (0, b""), op
    assert topo.proxy_entries() == set() and topo.route_to(IP) is None
    assert "169.254.0.1" not in topo.ip(topo.host, "addr", "show", g.host_dev)
    assert vz.records() == []
