"""One real lab (private libvirtd in namespaces) per test session, removed at the end even
when tests fail. Without root and outside CI the e2e tests skip; in CI (CI=true) a lab
that cannot come up fails every e2e test loudly."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import snapshot
from vzlibvirt.lab import guests
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.lock import lab_lock
from vzlibvirt.lab.twohosts import TwoHostLab

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def lab_session():
    """(Lab, leftovers snapshot taken before `up`)."""
    require_root()
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



def require_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI=true: the e2e tests need root to build the lab")
        pytest.skip("e2e tests need root (and run in CI)")


@contextlib.contextmanager
def two_host_lab(*, bgp: bool = False) -> Iterator[TwoHostLab]:
    """The two-host lab (BGP: as a routed fabric) for one test module, made afresh and
    removed at the end. The one-host lab goes down first (both use the machine's libvirt
    mount points); the next test that needs it brings it up again."""
    require_root()
    two = TwoHostLab(bgp=bgp)
    with lab_lock(two.a.paths):
        Lab().down(quiet=True)
        two.down(quiet=True)  # one left up (`lab demo --keep`) runs another tree's hooks
        two.up()
        try:
            yield two
        finally:
            two.down(quiet=True)


@pytest.fixture
def guests_on(labs):
    """Define and start guests on a host of the module's two-host lab (`labs`); destroyed
    and undefined on both hosts after the test."""
    made: list[guests.Guest] = []

    def start(host: Lab, *gs: guests.Guest) -> None:
        for g in gs:
            for h in labs.hosts:
                h.undefine(g)
            host.define(g)
            made.append(g)
            host.start(g)
        labs.lan_flush()  # tests reuse IPs with other MACs

    yield start
    for g in made:
        for h in labs.hosts:
            h.undefine(g)
