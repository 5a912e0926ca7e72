"""RecordIndex: a refresh re-reads the state directory only when it changed."""

from __future__ import annotations

import os
import time

from vzlibvirt.model import Mode
from vzlibvirt.state import DomainRecord, InterfaceRecord, RecordIndex, StateStore


def record(n: int) -> DomainRecord:
    iface = InterfaceRecord(mac=f"52:54:00:00:00:{n:02x}", mode=Mode.ROUTED, host_dev=f"vnet{n}",
                            ifindex=10 + n, ips=[f"198.51.100.{n}"], neighbour_devs=["enp0s5"])
    return DomainRecord(key=f"lxc-{n:08d}-0000-0000-0000-000000000000", name=f"d{n}",
                        uuid=f"{n:08d}-0000-0000-0000-000000000000", driver="lxc",
                        phase="wired", interfaces=[iface])


def age(store: StateStore, seconds: float = 5) -> None:
    """Pretend the directory's last change was SECONDS ago (a settled timestamp)."""
    past = time.time() - seconds
    os.utime(store.domains, (past, past))


def test_unchanged_directory_is_not_read_again(tmp_path, monkeypatch):
    store = StateStore(tmp_path)
    store.save(record(1))
    age(store)
    index = RecordIndex(store)
    index.refresh()
    assert [r.name for r in index.records_for("vnet1")] == ["d1"]
    loads = []
    monkeypatch.setattr(store, "load", lambda key: loads.append(key))
    monkeypatch.setattr(os, "listdir", lambda path: loads.append(path) or [])
    index.refresh()
    assert loads == []  # one stat of the directory, nothing else
    assert [r.name for r in index.records_for("vnet1")] == ["d1"]


def test_every_change_is_seen(tmp_path):
    store = StateStore(tmp_path)
    index = RecordIndex(store)
    index.refresh()
    for n in (1, 2, 3):  # written right after a refresh, within one timestamp tick
        store.save(record(n))
        index.refresh()
        assert [r.name for r in index.records_for(f"vnet{n}")] == [f"d{n}"]
    store.delete(record(2).key)
    index.refresh()
    assert index.records_for("vnet2") == []
    age(store)
    index.refresh()
    store.save(record(4))  # after a settled stamp: the directory's mtime moves on
    index.refresh()
    assert [r.name for r in index.records_for("vnet4")] == ["d4"]
