"""The state store: what vzlibvirt applied, per domain, so stop removes exactly that.

The layout under the state dir is the contract's (contract.py): one record per wired
domain, one claim file per guest IP (O(1) conflict checks), the host-wide lock.
Each write goes to a temporary file that is renamed into place, so a process killed at
any point leaves either the old or the new record, never half of one. Nothing is
fsynced: the state describes kernel entries that do not survive a reboot either, so it
belongs on a tmpfs (/run) and only has to be consistent against process crashes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vzlibvirt import contract
from vzlibvirt.entries import Entry, entry_from_json
from vzlibvirt.fsutil import atomic_write
from vzlibvirt.model import Filter, Mode

FORMAT_VERSION = 1
INCOMING_MAX_AGE_S = 120.0  # `migrate` to `started` takes a second; older marks are stale


class Stage(StrEnum):
    """How much of a domain's wiring this host holds (docs/migration.md).

    A live migration runs the destination's `started` before any memory is sent, while
    the guest still runs on the source: the destination prepares without telling the LAN
    until libvirt reports the guest resumed there, and the source takes its routes and
    proxy entries back once libvirt reports the guest paused or gone for the migration.
    """

    PUBLISHED = "published"  # the guest runs here: every entry
    INCOMING = "incoming"  # a migration's destination before the guest resumes: no LAN entries
    WITHDRAWN = "withdrawn"  # a migration's source once the guest left: device entries only

    def keeps(self, entry: Entry) -> bool:
        return entry.reach in _REACH[self]

    @property
    def announces(self) -> bool:
        return self is Stage.PUBLISHED


_REACH = {Stage.PUBLISHED: ("device", "host", "lan"), Stage.INCOMING: ("device", "host"),
          Stage.WITHDRAWN: ("device",)}


@dataclass
class AppliedEntry:
    entry: Entry
    owned: bool  # True: we created it and remove it on stop

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "owned": self.owned}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppliedEntry:
        data = dict(data)
        owned = bool(data.pop("owned"))
        return cls(entry_from_json(data), owned)


@dataclass
class InterfaceRecord:
    """One wired interface: what resolve() found, and the entries applied for it.

    Routed interfaces fill `neighbour_devs`, bridged ones the bridge fields; in the JSON
    the bridge fields sit under "extra" (the record format of version 1)."""

    mac: str
    mode: Mode
    host_dev: str
    ifindex: int
    ips: list[str] = field(default_factory=list)
    neighbour_devs: list[str] = field(default_factory=list)
    bridge: str = ""
    bridge_mtu: int = 0
    filter: Filter = Filter.NONE
    isolated: bool = False
    plugged_by: str = ""  # "libvirt" or "vzlibvirt": who makes the device a bridge port
    entries: list[AppliedEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.mode is Mode.BRIDGED:
            extra = {"bridge": self.bridge, "bridge_mtu": self.bridge_mtu,
                     "filter": self.filter.value, "isolated": self.isolated,
                     "plugged_by": self.plugged_by}
        return {
            "mac": self.mac, "mode": self.mode.value, "host_dev": self.host_dev,
            "ifindex": self.ifindex, "ips": self.ips, "neighbour_devs": self.neighbour_devs,
            "extra": extra, "entries": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InterfaceRecord:
        extra = data.get("extra", {})
        return cls(
            mac=data["mac"], mode=Mode(data["mode"]), host_dev=data["host_dev"],
            ifindex=data["ifindex"], ips=list(data.get("ips", [])),
            neighbour_devs=list(data.get("neighbour_devs", [])),
            bridge=extra.get("bridge", ""), bridge_mtu=extra.get("bridge_mtu", 0),
            filter=Filter(extra.get("filter", Filter.NONE.value)),
            isolated=bool(extra.get("isolated", False)),
            plugged_by=extra.get("plugged_by", ""),
            entries=[AppliedEntry.from_json(e) for e in data.get("entries", [])],
        )


@dataclass
class DomainRecord:
    key: str
    name: str
    uuid: str
    driver: str
    phase: str = "wiring"  # "wiring": written ahead of the kernel changes; "wired": done
    stage: Stage = Stage.PUBLISHED
    interfaces: list[InterfaceRecord] = field(default_factory=list)
    updated: float = 0.0

    def owned_entries(self) -> list[Entry]:
        return [a.entry for i in self.interfaces for a in i.entries if a.owned]

    def ips(self) -> list[str]:
        return [ip for i in self.interfaces for ip in i.ips]

    def wired_on(self, ifindex: Callable[[str], int | None]) -> bool:
        """Already wired: committed, and every interface is still on the device it was
        wired on (`ifindex` of its host device now; a re-created device lost our entries)."""
        return self.phase == "wired" and all(ifindex(i.host_dev) == i.ifindex
                                             for i in self.interfaces)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION, "key": self.key, "name": self.name, "uuid": self.uuid,
            "driver": self.driver, "phase": self.phase, "stage": self.stage.value,
            "updated": self.updated,
            "interfaces": [i.to_json() for i in self.interfaces],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainRecord:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported state format {data.get('version')!r}")
        return cls(
            key=data["key"], name=data["name"], uuid=data["uuid"], driver=data["driver"],
            phase=data.get("phase", "wiring"), updated=data.get("updated", 0.0),
            stage=Stage(data.get("stage", Stage.PUBLISHED.value)),
            interfaces=[InterfaceRecord.from_json(i) for i in data.get("interfaces", [])],
        )


@dataclass(frozen=True)
class Claim:
    key: str
    name: str


class StateStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.domains = contract.domains_dir(self.root)
        self.claims = contract.claims_dir(self.root)
        # a long-lived reader of this store (the agent's RecordIndex) hears of every
        # record written or deleted through it, so it need not rescan the directory
        self.observer: RecordIndex | None = None

    # locking
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the host-wide lock: one change to shared state at a time."""
        self._ensure_dirs()
        fd = os.open(contract.lock_path(self.root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_dirs(self) -> None:
        for d in (self.root, self.domains, self.claims):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    # domain records
    def path(self, key: str) -> Path:
        return contract.record_path(self.root, key)

    def load(self, key: str) -> DomainRecord | None:
        try:
            raw = self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        return DomainRecord.from_json(json.loads(raw))

    def save(self, record: DomainRecord) -> None:
        self._ensure_dirs()
        record.updated = time.time()
        # compact: json's C encoder (an indent makes it fall back to Python, 4x slower,
        # twice per start); `vzlibvirt show` and `jq` are for reading
        data = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()
        atomic_write(self.path(record.key), data)
        if self.observer is not None:
            self.observer.saved(record.key, data)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()
        if self.observer is not None:
            self.observer.deleted(key)

    def domain_keys(self) -> list[str]:
        if not self.domains.is_dir():
            return []
        return sorted(k for k in map(contract.record_key, os.listdir(self.domains)) if k)

    def records(self) -> list[DomainRecord]:
        out = []
        for key in self.domain_keys():
            rec = self.load(key)
            if rec is not None:
                out.append(rec)
        return out

    # live migration: the destination's mark between `migrate` and `started`
    def mark_incoming(self, key: str) -> None:
        path = contract.incoming_path(self.root, key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, b"")

    def take_incoming(self, key: str) -> bool:
        """Whether `migrate` marked the domain lately; the mark is used up."""
        path = contract.incoming_path(self.root, key)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        path.unlink(missing_ok=True)
        return age <= INCOMING_MAX_AGE_S

    # IP claims
    def _claim_path(self, ip: str) -> Path:
        return contract.claim_path(self.root, ip)

    def claim_owner(self, ip: str) -> Claim | None:
        """Who holds `ip`; a claim whose domain record is gone is stale and ignored."""
        try:
            key, _, name = self._claim_path(ip).read_text().partition("\n")
        except FileNotFoundError:
            return None
        if not self.path(key).exists():
            return None
        return Claim(key, name)

    def claim(self, ip: str, key: str, name: str) -> None:
        data = f"{key}\n{name}".encode()
        try:
            if self._claim_path(ip).read_bytes() == data:
                return
        except FileNotFoundError:
            self._ensure_dirs()
        atomic_write(self._claim_path(ip), data)

    def release(self, ip: str, key: str) -> None:
        path = self._claim_path(ip)
        try:
            owner = path.read_text().partition("\n")[0]
        except FileNotFoundError:
            return
        if owner == key:
            path.unlink(missing_ok=True)


class RecordIndex:
    """The wired records by device, kept current incrementally.

    A netlink event names a device; the index answers which records have entries there
    without parsing every state file again. Writes made through the store it observes
    (the agent's own: nearly all of them) update it at once, so a device event needs no
    rescan; a refresh lists the directory and re-reads only the records whose file
    changed since the last look (written by another process: a hook run without the
    agent, `reconcile`), and is left to the agent's background refresher.
    """

    # Every record write renames a file into the directory, so an unchanged directory
    # mtime means nothing changed: the periodic refresh then costs one stat instead of
    # one per record (3 % of a core at 10,000 guests, docs/performance.md). Timestamps
    # tick coarsely, so a stamp is trusted only when it was read well after it was set.
    SETTLED_NS = 100_000_000

    def __init__(self, store: StateStore, observe: bool = False):
        self.store = store
        self._seen: dict[str, tuple[int, DomainRecord, tuple[str, ...]]] = {}
        self._by_dev: dict[str, set[str]] = {}
        self._dir_stamp: int | None = None
        self._lock = threading.Lock()  # the refresher thread against the writers
        self._written: set[str] | None = None  # keys written while a scan runs
        self.generation = 0  # bumped by every change: a reader that saw it can skip all()
        if observe:
            store.observer = self

    # the store's own writes
    def saved(self, key: str, data: bytes) -> None:
        try:
            mtime = os.stat(self.store.path(key)).st_mtime_ns
            record = _parse_compact(data)
        except (OSError, ValueError):
            return
        with self._lock:
            self._put(key, (mtime, record, _devices(record)))

    def deleted(self, key: str) -> None:
        with self._lock:
            self._put(key, None)

    def _put(self, key: str, entry: tuple[int, DomainRecord, tuple[str, ...]] | None) -> None:
        self.generation += 1
        old = self._seen.pop(key, None)
        if old is not None:
            for dev in old[2]:
                keys = self._by_dev.get(dev)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_dev[dev]
        if entry is not None:
            self._seen[key] = entry
            for dev in entry[2]:
                self._by_dev.setdefault(dev, set()).add(key)
        if self._written is not None:
            self._written.add(key)

    # rescans
    def refresh(self) -> None:
        try:
            stamp = os.stat(self.store.domains).st_mtime_ns
        except FileNotFoundError:
            with self._lock:
                self._seen, self._by_dev, self._dir_stamp = {}, {}, None
                self.generation += 1
            return
        if stamp == self._dir_stamp:
            return
        scanned_at = time.time_ns()
        self._scan()
        self._dir_stamp = stamp if scanned_at - stamp > self.SETTLED_NS else None

    def _scan(self) -> None:
        with self._lock:
            self._written = set()
            seen = dict(self._seen)
        domains = str(self.store.domains)  # plain strings: pathlib costs more than the stat
        try:
            names = os.listdir(domains)
        except FileNotFoundError:
            names = []
        current = {}
        for name in names:
            key = contract.record_key(name)
            if key is None:
                continue
            try:
                mtime = os.stat(os.path.join(domains, name)).st_mtime_ns
                old = seen.get(key)
                if old is not None and old[0] == mtime:
                    current[key] = old
                    continue
                record = _load_compact(os.path.join(domains, name))
            except (OSError, ValueError):
                continue
            if record is not None:
                current[key] = (mtime, record, _devices(record))
        with self._lock:  # a write seen by the store during the scan is the newer one
            for key in self._written:
                if key in self._seen:
                    current[key] = self._seen[key]
                else:
                    current.pop(key, None)
            self._written = None
            if current.keys() != self._seen.keys() or any(
                    current[k] is not self._seen[k] for k in current):
                self._seen = current
                self.generation += 1
                self._by_dev = {}
                for key, (_, _, devs) in current.items():
                    for dev in devs:
                        self._by_dev.setdefault(dev, set()).add(key)

    # answers
    def all(self) -> list[DomainRecord]:
        with self._lock:
            return [rec for _, rec, _ in self._seen.values()]

    def records_for(self, dev: str) -> list[DomainRecord]:
        with self._lock:
            return [self._seen[key][1] for key in sorted(self._by_dev.get(dev, ()))]


def _devices(record: DomainRecord) -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for i in record.interfaces
                               for d in (i.host_dev, *i.neighbour_devs)))


def _load_compact(path: str) -> DomainRecord:
    """A record as the index keeps it: every string value interned, so the names that
    recur in each of 10,000 records (the uplink, the sysctl keys and kinds, the guest's
    device within its own record) are held once: 6.7 -> 4.3 KB per record."""
    with open(path, "rb") as fh:
        return _parse_compact(fh.read())


def _parse_compact(data: bytes) -> DomainRecord:
    return DomainRecord.from_json(json.loads(data, object_pairs_hook=_interned))


def _interned(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: sys.intern(v) if type(v) is str else v for k, v in pairs}
