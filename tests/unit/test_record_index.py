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


def test_the_stores_own_writes_need_no_rescan(tmp_path, monkeypatch):
    store = StateStore(tmp_path)
    index = RecordIndex(store, observe=True)
    index.refresh()
    monkeypatch.setattr(RecordIndex, "_scan", lambda self: (_ for _ in ()).throw(
        AssertionError("rescanned")))
    store.save(record(1))
    store.save(record(2))
    assert [r.name for r in index.records_for("vnet1")] == ["d1"]
    assert [r.name for r in index.records_for("enp0s5")] == ["d1", "d2"]
    moved = record(1)
    moved.interfaces[0].host_dev = "vnet9"
    store.save(moved)  # the device -> keys map follows a changed record
    assert index.records_for("vnet1") == []
    assert [r.name for r in index.records_for("vnet9")] == ["d1"]
    store.delete(record(2).key)
    assert [r.name for r in index.records_for("enp0s5")] == ["d1"]
    assert sorted(r.name for r in index.all()) == ["d1"]


def test_a_write_during_a_scan_is_not_lost(tmp_path, monkeypatch):
    """The refresher's scan lists the directory, then the agent writes: the newer
    write wins when the scan's result is put in place."""
    store = StateStore(tmp_path)
    store.save(record(1))
    index = RecordIndex(store, observe=True)
    real_listdir = os.listdir

    def listdir_then_write(path):
        names = real_listdir(path)
        if str(path) == str(store.domains):
            monkeypatch.setattr(os, "listdir", real_listdir)
            store.save(record(2))  # after the listing: the scan does not see it
            store.delete(record(1).key)  # listed, but gone by now
        return names

    monkeypatch.setattr(os, "listdir", listdir_then_write)
    index.refresh()
    assert [r.name for r in index.records_for("vnet2")] == ["d2"]
    assert index.records_for("vnet1") == []


def test_a_record_of_another_process_is_found_by_a_refresh(tmp_path):
    store = StateStore(tmp_path)
    index = RecordIndex(store, observe=True)
    index.refresh()
    StateStore(tmp_path).save(record(3))  # not through the observed store
    assert index.records_for("vnet3") == []
    index.refresh()
    assert [r.name for r in index.records_for("vnet3")] == ["d3"]


def test_the_generation_moves_with_every_change_and_only_then(tmp_path):
    """resync lists and compares the records again only when the generation moved."""
    store = StateStore(tmp_path)
    index = RecordIndex(store, observe=True)
    index.refresh()
    seen = [index.generation]
    store.save(record(1))  # the store's own write, heard at once
    seen.append(index.generation)
    index.refresh()
    seen.append(index.generation)
    StateStore(tmp_path).save(record(2))  # another process's: found by the next scan
    seen.append(index.generation)
    index.refresh()
    seen.append(index.generation)
    store.delete(record(1).key)
    seen.append(index.generation)
    assert seen[0] < seen[1] == seen[2] == seen[3] < seen[4] < seen[5]
    assert [r.name for r in index.all()] == ["d2"]
