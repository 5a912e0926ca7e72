"""The agent's link-event work at scale: a removed device is looked up, not searched
for, and lost events (a full socket buffer) are made up for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vzlibvirt.lab.domxml import domain_xml, routed

pytestmark = pytest.mark.netns


def run_inproc(topo, vz, scenario: str, names: list[str]) -> dict:
    vz.write_config('[agent]\nconnect = []\nresync_s = 0\n'
                    '[routed]\nneighbour_devs = ["enp0s5"]\nconflict_probe = false\n')
    args = []
    for n, name in enumerate(names):
        g = topo.add_guest(name, [f"198.51.100.{101 + n}"])
        xml = vz.root / f"{name}.xml"
        xml.write_bytes(domain_xml(name, interfaces=[routed(g.mac, g.ips, target=g.host_dev,
                                                            native=True)]))
        args += [name, g.host_dev, str(xml)]
    p = subprocess.run(["ip", "netns", "exec", topo.host, sys.executable,
                        str(Path(__file__).with_name("agent_inproc.py")), scenario,
                        str(vz.config), *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def test_removed_device_unwires_its_domain_without_a_rescan(topo, vz):
    out = run_inproc(topo, vz, "forget", ["ct1", "ct2"])
    assert out["forgotten"] == ["ct1"]
    assert out["left"] == ["ct2"]
    assert out["indexed"] == ["ct2"]  # the index followed the agent's own unwire


def test_lost_link_events_are_made_up_for(topo, vz):
    out = run_inproc(topo, vz, "overflow", ["ct1"])
    assert "198.51.100.101" in out["before"]
    assert "198.51.100.101" not in out["flushed"]  # the flap dropped the entry
    assert out["after"] == out["before"]  # put back although its events were lost
    assert out["again"] == out["before"]  # and the watcher still follows events
    assert len(out["overflow_lines"]) >= 1
    assert out["errors"] == []
