"""One Debian 12 system VM per session, on the lab, removed at the end even when tests
fail. The image is built (or found in the cache) before the lab lock is taken; the lab is
held for the boots and tests only. Without root and outside CI the tests skip; with
CI=true they fail loudly."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import require
from vzlibvirt.lab import settings as S
from vzlibvirt.lab.lab import Lab
from vzlibvirt.lab.lock import lab_lock
from vzlibvirt.lab.system import SystemVM

X_EXTRA = "203.0.113.10/24"  # Computer X on the bridged adapters' subnet too


@pytest.fixture(scope="session")
def system_vm():
    require(os.geteuid() == 0, "the system tests need root (namespaces, the lab)")
    lab = Lab()
    vm = SystemVM(lab)
    t0 = time.monotonic()
    vm.image()  # a first build (~1-2 min) happens outside the lab lock
    print(f"\n[system] image ready in {time.monotonic() - t0:.1f}s")
    with lab_lock(lab.paths):
        try:
            lab.up()
            lab.in_lan(["ip", "addr", "add", X_EXTRA, "dev", S.LAN_DEV], check=False)
            took = vm.up(fresh=True)
            print(f"[system] VM booted to ssh in {took:.1f}s")
            yield vm
        finally:
            vm.down()
            lab.down(quiet=True)
