"""`vzlibvirt lab system up|test|ssh|down` (docs/lab.md, "The system VM")."""

from __future__ import annotations

import os
import subprocess
import sys

from .sh import LabError


def run_system(action: str, *, install: bool = True) -> int:
    from .lab import Lab
    from .lock import lab_lock
    from .system import SystemVM

    vm = SystemVM(Lab())
    try:
        if action == "test":
            return _pytest()
        if action == "up":
            vm.image()  # a first build takes minutes: outside the lab lock
        with lab_lock(vm.lab.paths):
            if action == "up":
                fresh = not vm.running()
                vm.up()
                if install and fresh:
                    from .system_install import install as install_vzlibvirt

                    install_vzlibvirt(vm)
                print(f"system VM up: `vzlibvirt lab system ssh` (root@{vm_ip()} from "
                      f"Computer X's LAN)")
                return 0
            if action == "ssh":
                if not vm.running():
                    raise LabError("the system VM is not running: `vzlibvirt lab system up`")
                return vm.interactive()
            vm.down()
            return 0
    except LabError as exc:
        print(f"vzlibvirt lab system {action}: {exc}", file=sys.stderr)
        return 1


def vm_ip() -> str:
    from .system import IP4

    return IP4


def _pytest() -> int:
    """The system tests of the checkout (they bring the VM up fresh and take it down)."""
    from .system_install import checkout

    repo = checkout()
    env = dict(os.environ)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-m", "system",
                            str(repo / "tests" / "system")], cwd=repo, env=env)
