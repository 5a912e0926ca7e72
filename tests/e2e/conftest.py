"""One real lab (private libvirtd in namespaces) per test session, removed at the end even
when tests fail. Without root and outside CI the e2e tests skip; in CI (CI=true) a lab
that cannot come up fails every e2e test loudly."""

from __future__ import annotations

import os

import pytest

from tests.e2e.helpers import snapshot
from vzlibvirt.lab import guests
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.lock import lab_lock

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def lab_session():
    """(Lab, leftovers snapshot taken before `up`)."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI=true: the e2e tests need root to build the lab")
        pytest.skip("e2e tests need root (and run in CI)")
    lab = Lab()
    with lab_lock(lab.paths):  # another session's lab would be torn down under it
        lab.down(quiet=True)  # a lab left by an earlier run or by `lab up`
        before = snapshot(lab)
        lab.up()  # raises (= the tests error, never skip) when the lab cannot come up
        try:
            yield lab, before
        finally:
            lab.down(quiet=True)


@pytest.fixture
def lab(lab_session) -> Lab:
    lab, _ = lab_session
    if not lab.is_up():  # the lifecycle test takes it down and up again
        lab.up()
    # tests reuse LAN addresses with other MACs: Computer X starts each test afresh
    lab.in_lan(["ip", "neigh", "flush", "all"], check=False)
    return lab


@pytest.fixture
def run_guests(lab):
    """Define and start guests; every one is destroyed and undefined after the test."""
    made: list[guests.Guest] = []

    def start(*gs: guests.Guest, check: bool = True):
        results = []
        for g in gs:
            lab.undefine(g)
            lab.define(g)
            made.append(g)
            results.append(lab.start(g, check=check))
        return results

    yield start
    for g in reversed(made):
        lab.undefine(g)

