"""The resident agent on the real kernel, driven through the installed shims.

The shims are written by install-hooks into a private hooks dir and run with libvirt's
minimal environment, so these tests exercise the same path libvirt does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns.probes import host_snapshot
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.lab.resident import Resident
from vzlibvirt.lab.runner import LIBVIRT_ENV
from vzlibvirt.lab.runner import LIFE as OPS

pytestmark = pytest.mark.netns


def start_agent(topo, vz, sock: Path | None = None, **env: str) -> Resident:
    """`vzlibvirt agent` in the test's host namespace, once it serves its socket."""
    return Resident.start(vz, "agent", log=vz.root / "agent.log",
                          sock=sock or vz.root / "agent.sock", ns=topo.host, **env)


@pytest.fixture
def shimmed(topo, vz):
    """vz with [agent] socket in its root and shims installed in a private hooks dir."""
    vz.write_config(f'[agent]\nsocket = "{vz.root / "agent.sock"}"\n'
                    '[routed]\nneighbour_devs = ["enp0s5"]\n')
    r = vz.run("install-hooks", "--hooks-dir", str(vz.root / "hooks"), "--config",
               str(vz.config))
    assert r.rc == 0, r.stderr
    agents: list[Resident] = []

    def start(**env) -> Resident:
        a = start_agent(topo, vz, **env)
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.stop(signal.SIGKILL)


def shim(vz, driver, name, op, sub, xml, topo):
    path = vz.root / "hooks" / f"{driver}.d" / "50-vzlibvirt"
    return subprocess.run(["ip", "netns", "exec", topo.host, str(path), name, op, sub, "-"],
                          input=xml, capture_output=True, env=LIBVIRT_ENV, timeout=60)


def life(vz, topo, xml, name="ct1", driver="lxc", ops=OPS):
    for op, sub in ops:
        r = shim(vz, driver, name, op, sub, xml, topo)
        assert r.returncode == 0, (op, r.stderr.decode())


@pytest.fixture
def guest(topo):
    g = topo.add_guest("ct1", ["198.51.100.101"])
    return g, domain_xml("ct1", interfaces=[routed(g.mac, g.ips, target=g.host_dev,
                                                   native=True)])


def test_agent_serves_hooks_and_matches_in_process(topo, vz, shimmed, guest):
    g, xml = guest
    before = host_snapshot(topo)
    life(vz, topo, xml, ops=OPS[:3])  # no agent yet: the client runs the engine itself
    without_agent = host_snapshot(topo)
    assert topo.ping(topo.lan, g.ips[0])
    life(vz, topo, xml, ops=OPS[3:])
    agent = shimmed()
    life(vz, topo, xml, ops=OPS[:3])
    assert host_snapshot(topo) == without_agent
    assert topo.ping(topo.lan, g.ips[0])
    life(vz, topo, xml, ops=OPS[3:])
    after = host_snapshot(topo)
    assert after["proxy"] == before["proxy"] and vz.records() == []
    assert "ct1: added route 198.51.100.101/32 dev vnet0" in agent.log.read_text()
    # refusals travel back as the same one line
    bad = xml.replace(b"198.51.100.101", b"127.0.0.1")
    r = shim(vz, "lxc", "ct1", "prepare", "begin", bad, topo)
    assert r.returncode == 1
    assert r.stderr.decode().count("\n") == 1 and "loopback" in r.stderr.decode()
    assert agent.stop() == 0 and not agent.sock.exists()


def test_agent_republishes_after_admin_down_up(topo, vz, shimmed, guest):
    g, xml = guest
    shimmed()
    life(vz, topo, xml, ops=OPS[:3])
    for cycle in range(20):
        topo.ip(topo.host, "link", "set", "enp0s5", "down")
        topo.ip(topo.host, "link", "set", "enp0s5", "up")
        deadline = time.monotonic() + 5
        while topo.proxy_entries() != {"198.51.100.101"}:
            assert time.monotonic() < deadline, f"cycle {cycle}: proxy entry not back"
            time.sleep(0.01)
        assert topo.ping(topo.lan, g.ips[0], wait=3), f"cycle {cycle}"


def test_hook_without_agent_still_wires(topo, vz, shimmed, guest):
    g, xml = guest
    agent = shimmed()
    assert agent.stop() == 0
    life(vz, topo, xml, ops=OPS[:3])
    assert topo.proxy_entries() == {"198.51.100.101"} and topo.ping(topo.lan, g.ips[0])
    life(vz, topo, xml, ops=OPS[3:])
    assert topo.proxy_entries() == set()


def test_agent_killed_mid_request_leaves_host_exact(topo, vz, shimmed, guest, tmp_path):
    g, xml = guest
    life(vz, topo, xml)  # settings on, so the step count below is stable
    clean = host_snapshot(topo)
    trace = tmp_path / "trace"
    agent = shimmed(VZLIBVIRT_FAULT_TRACE=str(trace))
    life(vz, topo, xml, ops=OPS[:3])
    steps = [s for s in trace.read_text().splitlines() if s.split(" ", 1)[1].startswith("add")]
    life(vz, topo, xml, ops=OPS[3:])
    agent.stop()
    kill_at = int(steps[len(steps) // 2].split()[0])
    agent = shimmed(VZLIBVIRT_FAULT=f"kill:{kill_at}")
    r = shim(vz, "lxc", "ct1", "started", "begin", xml, topo)
    assert r.returncode == 1 and "agent" in r.stderr.decode()
    assert agent.proc.wait(timeout=10) == -signal.SIGKILL
    shimmed()  # restarted; libvirt follows the failed start with stopped + release
    life(vz, topo, xml, ops=OPS[3:])
    assert host_snapshot(topo) == clean and vz.records() == []


def test_socket_refuses_non_root(topo, vz, tmp_path_factory):
    sockdir = Path(tempfile.mkdtemp(prefix="vzt-sock-"))
    try:
        sockdir.chmod(0o755)  # traversable, so only the socket's own checks stand
        vz.write_config(f'[agent]\nsocket = "{sockdir / "agent.sock"}"\n')
        agent = start_agent(topo, vz, sock=sockdir / "agent.sock")
        try:
            assert oct(agent.sock.stat().st_mode & 0o777) == "0o600"
            probe = [sys.executable, str(Path(__file__).with_name("agent_probe.py")),
                     str(agent.sock)]
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            r = subprocess.run([*nobody, *probe], capture_output=True, text=True)
            assert r.stdout.strip() == "EACCES", r.stdout + r.stderr
            # with the file mode opened up, the agent still checks the peer's credentials
            os.chmod(agent.sock, 0o666)
            r = subprocess.run([*nobody, *probe], capture_output=True, text=True)
            assert "serves root only" in r.stdout and r.stdout.startswith("[b'1'"), \
                r.stdout + r.stderr
        finally:
            agent.stop(signal.SIGKILL)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def test_second_agent_refuses(topo, vz, shimmed):
    first = shimmed()
    second = vz.run("agent", ns=topo.host, timeout=30)
    assert second.rc == 1
    assert f"another agent (pid {first.proc.pid}" in second.stderr or \
        "another agent" in second.stderr
    assert second.stderr.count("\n") == 1
    assert first.proc.poll() is None and Path(first.sock).exists()


def test_agent_unwires_a_domain_whose_device_is_gone(topo, vz, shimmed, guest):
    """libvirt deletes the tap/veth before `stopped`; the agent removes the domain's
    entries at once and the stop hooks find nothing left to do."""
    g, xml = guest
    agent = shimmed()
    life(vz, topo, xml, ops=OPS[:3])
    # the uplink going away is not the guest going away: its record stays
    topo.ip(topo.host, "link", "set", "enp0s5", "down")
    topo.ip(topo.host, "link", "set", "enp0s5", "up")
    assert len(vz.records()) == 1
    topo.ip(topo.host, "link", "del", g.host_dev)
    deadline = time.monotonic() + 5
    while vz.records() or topo.proxy_entries():
        assert time.monotonic() < deadline, "the agent did not unwire the gone guest"
        time.sleep(0.01)
    assert "vnet0 is gone: removed" in agent.log.read_text()
    life(vz, topo, xml, ops=OPS[3:])
    assert topo.route_to("198.51.100.101") is None
