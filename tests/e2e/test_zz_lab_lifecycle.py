"""`lab up` is idempotent, `lab down` leaves nothing, a failed `up` cleans up after itself.
Named zz so it runs after the other e2e tests (it takes the shared lab down and up)."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import assert_clean, snapshot
from vzlibvirt.lab import daemon
from vzlibvirt.lab.guests import SEED_CONTAINERS
from vzlibvirt.lab.sh import LabError


def test_up_is_idempotent_and_down_leaves_nothing(lab_session, run_guests):
    lab, before = lab_session
    if not lab.is_up():
        lab.up()
    pid = daemon.read_pid(lab.paths, "libvirtd")
    lab.up()
    assert daemon.read_pid(lab.paths, "libvirtd") == pid, "a second `up` restarted the lab"
    run_guests(SEED_CONTAINERS[0])  # a running guest must not survive `down` either
    lab.down()
    assert_clean(before, snapshot(lab))


def test_failed_up_cleans_up(lab_session, monkeypatch):
    lab, before = lab_session
    lab.down(quiet=True)

    def broken_start(*_args):
        raise LabError("simulated libvirtd failure")

    monkeypatch.setattr(daemon, "start", broken_start)
    with pytest.raises(LabError, match="simulated"):
        lab.up()
    assert_clean(before, snapshot(lab))
