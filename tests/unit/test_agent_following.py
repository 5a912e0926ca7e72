"""The agent's following/<driver> files: what tells the hook shims that `reconnect` is
left to it (hooks/shim.sh.in). Written only once it follows a driver's events, removed
when it stops, and a crashed agent's file does not outlive the next agent's start."""

from __future__ import annotations

import os

from vzlibvirt.agent import RECONCILED_LINE, Agent, reconciles
from vzlibvirt.config import parse_config
from vzlibvirt.contract import following_path


def test_agent_marks_the_drivers_it_follows_while_it_runs(tmp_path):
    state = tmp_path / "state"
    cfg = parse_config({"state": {"dir": str(state)},
                        "agent": {"socket": str(tmp_path / "a.sock"), "connect": []}})
    stale = following_path(state, "lxc")
    stale.parent.mkdir(parents=True)
    stale.write_text("1\n")  # a crashed agent's, its pid since taken by a living process
    agent = Agent(cfg)
    agent.acquire()
    try:
        assert not stale.exists()  # gone before anything could be left to this agent
        agent._event_following("qemu")  # what the libvirt thread calls once connected
        assert following_path(state, "qemu").read_text() == f"{os.getpid()}\n"
        assert not following_path(state, "lxc").exists()  # not connected for lxc
    finally:
        agent.close()
    assert not following_path(state, "qemu").exists()  # stopped: the hooks re-apply again


def test_the_reconcile_log_line_reads_back_per_driver():
    """Benches and e2e tests wait for this line: its reader keeps up with its format."""
    text = "\n".join(["2026-12-01 agent: " + RECONCILED_LINE % (1000, "lxc", 0),
                      RECONCILED_LINE % (2, "qemu", 1), RECONCILED_LINE % (999, "lxc", 3)])
    assert reconciles(text, "lxc") == [(1000, 0), (999, 3)]
    assert reconciles(text, "qemu") == [(2, 1)]
