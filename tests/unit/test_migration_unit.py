"""The pure parts of live migration: which lifecycle events publish or withdraw, which
entries each stage holds, and that a record keeps its stage across a round trip."""

from __future__ import annotations

import pytest

from vzlibvirt import migration
from vzlibvirt.entries import Address, DeviceSysctl, HostSysctl, LinkUp, ProxyNeighbour, Route
from vzlibvirt.model import Mode
from vzlibvirt.state import AppliedEntry, DomainRecord, InterfaceRecord, Stage

ENTRIES = {
    "device": [HostSysctl("net/ipv4/ip_forward", "1"),
               DeviceSysctl("vnet0", 5, "net/ipv4/conf/vnet0/proxy_arp", "1"),
               LinkUp("vnet0", 5), Address("vnet0", 5, "169.254.0.1", 32)],
    "host": [Route("vnet0", 5, "198.51.100.7", 32)],
    "lan": [ProxyNeighbour("br0", 2, "198.51.100.7")],
}


@pytest.mark.parametrize("stage,kept", [
    (Stage.PUBLISHED, {"device", "host", "lan"}),
    (Stage.INCOMING, {"device", "host"}),
    (Stage.WITHDRAWN, {"device"}),
])
def test_each_stage_holds_its_reach(stage, kept):
    for reach, entries in ENTRIES.items():
        for e in entries:
            assert stage.keeps(e) == (reach in kept), (stage, e)
    assert stage.announces == (stage is Stage.PUBLISHED)


@pytest.mark.parametrize("event,detail,action", [
    (migration.EVENT_RESUMED, migration.RESUMED_MIGRATED, migration.PUBLISH),
    (migration.EVENT_SUSPENDED, migration.SUSPENDED_MIGRATED, migration.WITHDRAW),
    (migration.EVENT_STOPPED, migration.STOPPED_MIGRATED, migration.WITHDRAW),
    (migration.EVENT_RESUMED, 0, None),  # unpaused by an admin
    (migration.EVENT_SUSPENDED, 0, None),  # paused by an admin
    (migration.EVENT_STOPPED, 0, None),  # shut down: the stopped hook's job
    (migration.EVENT_STARTED, 1, None),  # the incoming guest exists, still paused
])
def test_lifecycle_events(event, detail, action):
    assert migration.action(event, detail) == action


def test_libvirt_numbers_match():
    libvirt = pytest.importorskip("libvirt")
    assert (migration.EVENT_STARTED, migration.EVENT_SUSPENDED, migration.EVENT_RESUMED,
            migration.EVENT_STOPPED) == (
        libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
        libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_STOPPED)
    assert (migration.SUSPENDED_MIGRATED, migration.RESUMED_MIGRATED,
            migration.STOPPED_MIGRATED) == (
        libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)


def test_record_keeps_its_stage():
    irec = InterfaceRecord("52:54:00:aa:00:01", Mode.ROUTED, "vnet0", 5, ["198.51.100.7"],
                           ["br0"], entries=[AppliedEntry(e, True) for e in ENTRIES["host"]])
    rec = DomainRecord("qemu-x", "vm", "x", "qemu", "wired", Stage.INCOMING, [irec])
    assert DomainRecord.from_json(rec.to_json()) == rec
    old = rec.to_json()
    del old["stage"]  # a record written before stages existed: published
    assert DomainRecord.from_json(old).stage is Stage.PUBLISHED


def test_qemu_downtime_from_the_job_completed_event():
    """As `virsh event --event job-completed` prints the source's statistics."""
    from vzlibvirt.lab.twohosts import downtime_ms

    text = ("event 'job-completed' for domain 'mvm1':\n\toperation: 2\n"
            "\ttime_elapsed: 1090\n\tdowntime: 107\n\tdowntime_net: 105\n")
    assert downtime_ms(text) == 107
    assert downtime_ms("") is None
