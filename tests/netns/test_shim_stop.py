"""The installed shim on the real kernel: stop operations whose XML has no final newline.

libvirt ends its domain XML with a newline, but the shim reads the <uuid> with the shell
and must not depend on that: XML on one line without one still unwires the domain.
"""

from __future__ import annotations

import pytest

from tests.netns.test_agent import shim, shimmed  # noqa: F401  (a fixture)
from vzlibvirt.lab.domxml import domain_xml, routed

pytestmark = pytest.mark.netns
IP = "198.51.100.101"


@pytest.mark.usefixtures("shimmed")  # shims installed; no agent: the engine runs in-process
def test_shim_unwires_a_domain_whose_xml_is_one_line_without_a_final_newline(topo, vz):
    g = topo.add_guest("ct1", [IP])
    xml = domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev, native=True)])
    one_line = xml.replace(b"\n", b"")
    assert b"<uuid>" in one_line and not one_line.endswith(b"\n")

    for op in ("prepare", "start", "started"):
        r = shim(vz, "lxc", "ct1", op, "begin", xml, topo)
        assert (r.returncode, r.stderr) == (0, b""), op
    assert topo.proxy_entries() == {IP} and topo.route_to(IP) is not None
    assert "169.254.0.1/32" in topo.ip(topo.host, "addr", "show", g.host_dev)
    assert len(vz.records()) == 1

    for op in ("stopped", "release"):
        r = shim(vz, "lxc", "ct1", op, "end", one_line, topo)
        assert (r.returncode, r.stderr) == (0, b""), op
    assert topo.proxy_entries() == set() and topo.route_to(IP) is None
    assert "169.254.0.1" not in topo.ip(topo.host, "addr", "show", g.host_dev)
    assert vz.records() == []
