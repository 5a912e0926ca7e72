"""The agent's periodic drift repair (`[agent] resync_s`): every recorded entry that the
kernel no longer holds is put back, one log line per repair.

Why: link events do not cover every loss. `ip neigh flush proxy`, a netplan or
ifupdown run, or a kernel that flushes proxy entries on carrier loss without telling
anyone (Debian 12's 6.1, docs/reliability.md) leave a routed guest off the LAN with no
event to react to. A pass reads each kernel table once (kernel_tables.py: one raw dump
of the host routes, host-prefix addresses and proxy entries), so it costs a few dumps
however many guests there are, and writes nothing when nothing is missing.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vzlibvirt.contract import ROUTE_PROTOCOL
from vzlibvirt.entries import Address, Entry, LinkUp, ProxyNeighbour, Route
from vzlibvirt.kernel_tables import KernelTables, TableEvents
from vzlibvirt.state import DomainRecord, RecordIndex, StateStore

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink

log = logging.getLogger("vzlibvirt.resync")
# Compared: routes, proxy entries, addresses (kernel tables a dump answers); a guest
# device's up state is restored with them. Settings (sysctls) are not dropped by the
# events above, and re-wiring the rest is `reconcile`'s job.


@dataclass
class Pass:
    """What one pass saw and did."""

    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unchanged: bool = False  # records and kernel tables as at the last clean pass
    dumped: list[str] = field(default_factory=list)  # the tables read from the kernel


Checks = list[tuple[str, tuple, Entry]]  # (table, the key a dump of it holds, entry)
# the tables whose losses the kernel announces (kernel_tables.TableEvents)
ANNOUNCED = frozenset({"routes", "addresses"})


@dataclass
class Memory:
    """What a long-lived caller (the agent) keeps between passes, so that a pass over an
    unchanged host costs one dump and one hash of it: each record's checks, worked out
    once; one dump socket (its requests always carry the same sequence numbers, so the
    same table gives a byte-identical answer); each table's fingerprint after the last
    pass that found nothing missing; and the kernel's notifications, which tell when
    routes and addresses cannot have changed (kernel_tables.TableEvents)."""

    checks: dict[str, tuple[DomainRecord, Checks]] = field(default_factory=dict)
    wanted: list[str] = field(default_factory=list)  # the tables those checks read
    clean: dict[str, bytes] = field(default_factory=dict)
    checked: int = 0
    kt: KernelTables | None = None
    events: TableEvents | None = None
    # the wired records as of the index's generation: an index that did not change
    # since the last pass is not listed and compared again (10,000 records)
    seen: tuple[RecordIndex, int] | None = None  # (the index, its generation)
    records: list[DomainRecord] = field(default_factory=list)

    def tables(self) -> KernelTables:
        if self.kt is None:
            self.events = TableEvents()  # before the first dump: nothing falls between
            self.kt = KernelTables()
        self.kt.reset()
        return self.kt

    def quiet(self) -> bool:
        """No route, address or link news since the last pass (False the first time)."""
        return self.events is not None and self.events.quiet()

    def close(self) -> None:
        for held in (self.kt, self.events):
            if held is not None:
                held.close()
        self.kt = self.events = None

    def update(self, records: list[DomainRecord]) -> bool:
        """Bring the checks up to RECORDS; whether any changed."""
        changed = len(self.checks) != len(records)
        if changed:
            keep = {r.key for r in records}
            for key in [k for k in self.checks if k not in keep]:
                del self.checks[key]
        for record in records:
            known = self.checks.get(record.key)
            if known is None or known[0] is not record:
                self.checks[record.key] = (record, _checks(record))
                changed = True
        if changed:
            self.wanted = sorted({table for _, checks in self.checks.values()
                                  for table, _, _ in checks})
        return changed


def resync(store: StateStore, nl: Netlink, index: RecordIndex | None = None,
           memory: Memory | None = None) -> Pass:
    """Compare every wired record's entries with the kernel and re-add what is missing.

    Entries on a device that no longer has the recorded ifindex are skipped (the device
    went away with its entries; the guest's stop or `reconcile` deals with that). A
    missing entry on a device that is down is re-added only when the record also brings
    that device up (a guest's own device); a neighbour device someone took down is left
    down, and the agent re-publishes the moment it comes back up. With MEMORY (kept
    between passes), a pass whose records and kernel answers equal those of the last
    clean pass ends after the dumps (`Pass.unchanged`).
    """
    mem = memory or Memory()
    try:
        with store.locked():
            index = index or RecordIndex(store)
            index.refresh()
            seen = (index, index.generation)  # read before the records
            changed = False
            if mem.seen is None or mem.seen[0] is not index or mem.seen[1] != seen[1]:
                mem.records = [r for r in index.all() if r.phase == "wired"]
                changed, mem.seen = mem.update(mem.records), seen
            return _pass(mem.records, nl, mem, changed)
    finally:
        if memory is None:
            mem.close()


def _pass(records: list[DomainRecord], nl: Netlink, mem: Memory, changed: bool) -> Pass:
    done = Pass()
    if not records:
        mem.clean = {}
        return done
    quiet = mem.quiet()  # read before the dumps: news after them shows next time
    kt = mem.tables()
    try:
        # proxy entries vanish without a word: always read; routes and addresses only
        # after news, or when a pass found something missing since they were last read
        skip = {t for t in ANNOUNCED if quiet and t in mem.clean}
        done.dumped = [t for t in mem.wanted if t not in skip]
        prints = {t: kt.fingerprint(t, ROUTE_PROTOCOL) for t in done.dumped}
        if not changed and all(prints[t] == mem.clean.get(t) for t in done.dumped):
            done.checked, done.unchanged = mem.checked, True
            return done
        absent: list[tuple[DomainRecord, Entry]] = []
        tables = _Tables(kt)
        for record in records:
            checks = mem.checks[record.key][1]
            for table, key, entry in checks:
                if key not in tables[table]:
                    absent.append((record, entry))
            done.checked += len(checks)
        done.dumped = list(mem.wanted)
        clean = {t: kt.fingerprint(t, ROUTE_PROTOCOL) for t in mem.wanted}  # all read now
    finally:
        kt.reset()  # the dumps are megabytes at 10,000 guests: not kept between passes
    # only on the device that still has the recorded index (read when needed: a
    # list of every device costs more than the whole comparison)
    names = dict(socket.if_nameindex()) if absent else {}
    missing = [(r, e) for r, e in absent if names.get(e.ifindex) == e.dev]
    # a repair changes the tables: the next pass compares again and finds them whole
    mem.clean, mem.checked = ({} if missing else clean), done.checked
    if missing:
        with nl.transaction():
            _repair_all(missing, nl, done)
    return done


def _checks(record: DomainRecord) -> Checks:
    """The entries a pass compares, each with the table and key that show it present;
    the other kinds (settings, nft elements) are `reconcile`'s."""
    out: Checks = []
    for entry in record.owned_entries():
        if isinstance(entry, Route):
            out.append(("routes", (entry.dst, entry.prefixlen, entry.ifindex), entry))
        elif isinstance(entry, ProxyNeighbour):
            out.append(("proxies", (entry.dst, entry.ifindex), entry))
        elif isinstance(entry, Address):
            out.append(("addresses", (entry.ifindex, entry.address, entry.prefixlen), entry))
    return out


class _Tables(dict):
    """A kernel table's dump, read the first time a check asks for it."""

    def __init__(self, kt: KernelTables) -> None:
        super().__init__()
        self.kt = kt

    def __missing__(self, table: str) -> set:
        self[table] = (self.kt.routes(ROUTE_PROTOCOL) if table == "routes"
                       else getattr(self.kt, table)())
        return self[table]


def _repair_all(missing: list, nl, done: Pass) -> None:
    raised: set[int] = set()
    for record, entry in missing:
        link = nl.link_by_index(entry.ifindex)
        if link is None:
            continue
        if not link.up and entry.ifindex not in raised:
            link_up = LinkUp(entry.dev, entry.ifindex)
            if link_up not in record.owned_entries():
                continue  # not a device of ours: its up-again event re-publishes
            _repair(record.name, link_up, nl, done)
            raised.add(entry.ifindex)
        _repair(record.name, entry, nl, done)


def _repair(name: str, entry, nl, done: Pass) -> None:
    from vzlibvirt.netlink import error_text

    try:
        if not entry.add(nl):
            return  # there after all (a route of another protocol on the same device)
    except Exception as exc:  # one entry's failure must not stop the pass
        line = f"{name}: could not re-add {entry.describe()}: {error_text(exc)}"
        done.failed.append(line)
        log.warning("resync: %s", line)
        return
    line = f"{name}: re-added {entry.describe()}"
    done.repaired.append(line)
    log.info("resync: %s", line)
