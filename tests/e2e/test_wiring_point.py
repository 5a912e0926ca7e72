"""The libvirt behaviour the engine's choice of `started` rests on (docs/wiring-point.md),
read from the lab's call logger: if a libvirt update changes it, this test says so."""

from __future__ import annotations

import re

from vzlibvirt.lab.guests import SEED_CONTAINERS, SEED_VMS


def targets(lab, driver: str, name: str) -> dict[str, str]:
    """operation -> the <target dev> names the hook's XML carried."""
    out = {}
    for call in lab.hook_calls():
        m = re.match(rf"CALL {driver} {name} (\S+) \S+ target=\[([^\]]*)\]", call)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def test_where_the_host_device_is_named(lab, run_guests):
    ct, vm = SEED_CONTAINERS[0], SEED_VMS[0]
    run_guests(ct, vm)
    dev_ct, dev_vm = lab.host_dev(ct), lab.host_dev(vm)
    lxc = targets(lab, "lxc", ct.name)
    assert lxc["prepare"] == "" and lxc["start"] == "", lxc  # LXC: not named at start
    assert lxc["started"] == dev_ct, lxc
    qemu = targets(lab, "qemu", vm.name)
    assert qemu["prepare"] == "", qemu
    assert qemu["start"] == qemu["started"] == dev_vm, qemu  # QEMU: named from start on
    for g in (ct, vm):
        lab.destroy(g)
    assert targets(lab, "qemu", vm.name)["stopped"] == ""  # stop cannot rely on the XML
