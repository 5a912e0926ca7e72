"""Wire and unwire a domain: ordering, the state record, rollback and removal.

Callable from the hook process and from a long-lived process alike: it takes a parsed
Domain, the Config, a StateStore and an open Netlink, and holds the host-wide lock for
the duration of one change.

Crash consistency comes from writing the record ahead of the kernel: before any entry is
added, the record already lists it as ours, so a process killed at any step leaves a
record from which the next wire (re-add what is missing) or unwire (remove what is
there) reaches exactly the desired state. Entries that were on the host before us are
recorded as not ours and never removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vzlibvirt import faults
from vzlibvirt.config import Config
from vzlibvirt.entries import Entry
from vzlibvirt.errors import ConflictError, HostError, VzError
from vzlibvirt.model import Domain
from vzlibvirt.modes import plugin_for
from vzlibvirt.reverter import Reverter
from vzlibvirt.state import (
    AppliedEntry,
    DomainRecord,
    InterfaceRecord,
    RecordIndex,
    Stage,
    StateStore,
)
from vzlibvirt.wiring import WireContext

if TYPE_CHECKING:  # pyroute2 (~170 ms) stays off `prepare`, which imports check_claims
    from vzlibvirt.netlink import Netlink

log = logging.getLogger(__name__)


def error_text(exc: BaseException) -> str:
    from vzlibvirt.netlink import error_text as netlink_error_text

    return netlink_error_text(exc)


@dataclass
class Outcome:
    """What one wire/unwire changed, for logs, `reconcile` reports and tests."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def check_claims(domain: Domain, store: StateStore) -> None:
    """Refuse IPs that another wired domain holds (state index only: no netlink)."""
    key = domain.key
    for iface in domain.managed_interfaces:
        for gip in iface.ips:
            owner = store.claim_owner(str(gip.address))
            if owner is not None and owner.key != key:
                raise ConflictError(
                    f"IP {gip.address} is already routed to running domain '{owner.name}'",
                    mac=iface.label,
                )


def wire(domain: Domain, config: Config, store: StateStore, nl: Netlink,
         stage: Stage | None = None, announce: bool = False, probe: bool = True) -> Outcome:
    """Make the host hold DOMAIN's entries for `stage` (None: the stage its record has,
    a new domain is published); `announce` tells the LAN even when nothing was added
    (a guest that resumed here after a migration); `probe` False: a migration's
    destination, whose guest's IPs the source still answers for."""
    with store.locked(), nl.transaction():
        return _Wiring(domain, config, store, nl, stage, announce, probe).run()


def withdraw(key: str, store: StateStore, nl: Netlink) -> Outcome:
    """A migration's source once the guest paused or left for the destination: remove
    the domain's routes and proxy entries, keep the record (with its claims) at stage
    `withdrawn`, so a failed migration can publish again and `stopped` removes the rest."""
    outcome = Outcome()
    with store.locked(), nl.transaction():
        record = store.load(key)
        if record is None or record.stage is Stage.WITHDRAWN:
            return outcome
        for irec in record.interfaces:
            kept = [a for a in irec.entries if Stage.WITHDRAWN.keeps(a.entry)]
            for applied in reversed(irec.entries):
                if applied.owned and not Stage.WITHDRAWN.keeps(applied.entry) \
                        and _remove_quietly(applied.entry, nl):
                    outcome.removed.append(applied.entry.describe())
            irec.entries = kept
        record.stage = Stage.WITHDRAWN
        store.save(record)
    for line in outcome.removed:
        log.info("%s: withdrawn %s", record.name, line)
    return outcome


def unwire(key: str, store: StateStore, nl: Netlink) -> Outcome:
    with store.locked(), nl.transaction():
        return _unwire_locked(key, store, nl)


class _Wiring:
    def __init__(self, domain, config, store, nl, stage, announce, probe):
        self.domain: Domain = domain
        self.store: StateStore = store
        self.nl: Netlink = nl
        self.config: Config = config
        self.stage: Stage | None = stage
        self.announce: bool = announce
        self.probe: bool = probe
        self.outcome = Outcome()

    def run(self) -> Outcome:
        domain = self.domain
        check_claims(domain, self.store)
        previous = self.store.load(domain.key)
        stage = self.stage or (previous.stage if previous else Stage.PUBLISHED)
        self.ctx = WireContext(domain, self.config, self.nl, self.store, stage,
                               self.probe)
        prev_by_mac = {i.mac: i for i in previous.interfaces} if previous else {}
        prev_owned = {e.identity for e in previous.owned_entries()} if previous else set()

        record = DomainRecord(key=domain.key, name=domain.name, uuid=domain.uuid or "",
                              driver=domain.driver.value, phase="wiring", stage=stage)
        missing: list[tuple[InterfaceRecord, Entry]] = []  # ours, not on the host: to add
        for iface in domain.managed_interfaces:
            plugin = plugin_for(iface)
            try:
                irec = plugin.resolve(self.ctx, iface, prev_by_mac.get(iface.mac or ""))
                for entry in plugin.entries(self.ctx, iface, irec):
                    if not stage.keeps(entry):
                        continue  # held back until the guest runs here
                    present = entry.present(self.nl)
                    # present and not recorded as ours: someone else's, never removed
                    owned = entry.identity in prev_owned or not present
                    irec.entries.append(AppliedEntry(entry, owned))
                    if owned and not present:
                        missing.append((irec, entry))
            except VzError as exc:
                raise exc.with_context(mac=iface.label) from None
            record.interfaces.append(irec)

        desired = {a.entry.identity for i in record.interfaces for a in i.entries}
        stale = [e for e in (previous.owned_entries() if previous else [])
                 if e.identity not in desired]
        now = {i.host_dev: i.ifindex for i in record.interfaces}.get
        if (previous is not None and previous.wired_on(now) and not missing and not stale
                and _same(previous, record)):
            for ip in record.ips():  # (cheap: a claim is rewritten only if it differs)
                self.store.claim(ip, domain.key, domain.name)
            self._announce(record, force=self.announce)
            return self.outcome  # already exactly right: no write, no announcement asked

        # Write ahead: the record names every entry we are about to create.
        faults.checkpoint("write-ahead")
        for ip in record.ips():
            self.store.claim(ip, domain.key, domain.name)
        self.store.save(record)

        revert = Reverter()
        try:
            for irec, entry in missing:
                self._add(irec, entry, revert)
            for entry in reversed(stale):
                faults.checkpoint(f"remove stale {entry.describe()}")
                if _remove_quietly(entry, self.nl):
                    self.outcome.removed.append(entry.describe())
            record.phase = "wired"
            faults.checkpoint("commit")
            if record.interfaces:
                self.store.save(record)
            else:  # nothing of ours left on this domain (its XML dropped our config)
                self.store.delete(record.key)
            revert.success()
        except BaseException as exc:
            self._rollback(revert, previous, record)
            if isinstance(exc, VzError):
                raise exc.with_context(domain=domain.name) from None
            raise
        if previous is not None:
            for ip in set(previous.ips()) - set(record.ips()):
                self.store.release(ip, domain.key)
        self._announce(record, force=self.announce or bool(self.outcome.added))
        for line in self.outcome.added:
            log.info("%s: added %s", domain.name, line)
        return self.outcome

    def _announce(self, record: DomainRecord, force: bool) -> None:
        if force and record.stage.announces:
            for iface, irec in zip(self.domain.managed_interfaces, record.interfaces,
                                   strict=True):
                plugin_for(iface).after_wire(self.ctx, iface, irec)

    def _add(self, irec: InterfaceRecord, entry: Entry, revert: Reverter) -> None:
        faults.checkpoint(f"add {entry.describe()}")
        snap = entry.snapshot()
        try:
            created = entry.add(self.nl)
        except VzError:
            raise
        except Exception as exc:  # netlink / OS errors become one-line refusals
            raise HostError(f"cannot add {entry.describe()}: {error_text(exc)}",
                            mac=irec.mac) from None
        if created:
            revert.add(lambda: entry.restore(self.nl, snap), entry.describe())
            self.outcome.added.append(entry.describe())

    def _rollback(self, revert: Reverter, previous: DomainRecord | None,
                  record: DomainRecord) -> None:
        """Undo what this call created, newest first, and put the old record back."""
        for what, exc in revert.fail():  # every undo runs, failed ones are logged
            log.error("rollback of %s failed: %s", what, error_text(exc))
        if previous is not None:
            self.store.save(previous)
            keep = set(previous.ips())
        else:
            self.store.delete(record.key)
            keep = set()
        for ip in set(record.ips()) - keep:
            self.store.release(ip, record.key)


def _same(a: DomainRecord, b: DomainRecord) -> bool:
    """Equal but for the phase and the time of writing."""
    ja, jb = a.to_json(), b.to_json()
    for j in (ja, jb):
        j.pop("updated", None)
        j.pop("phase", None)
    return ja == jb


def _remove_quietly(entry: Entry, nl: Netlink) -> bool:
    try:
        return entry.revertible and entry.remove(nl)
    except Exception as exc:
        log.warning("removing %s failed: %s", entry.describe(), error_text(exc))
        return False


def _unwire_locked(key: str, store: StateStore, nl: Netlink) -> Outcome:
    outcome = Outcome()
    record = store.load(key)
    if record is None:
        return outcome
    failures = []
    for entry in reversed(record.owned_entries()):
        if not entry.revertible:
            continue
        faults.checkpoint(f"remove {entry.describe()}")
        try:
            if entry.remove(nl):
                outcome.removed.append(entry.describe())
        except Exception as exc:
            failures.append(f"{entry.describe()}: {error_text(exc)}")
    if failures:
        raise HostError(f"could not remove {len(failures)} entries: {failures[0]}",
                        domain=record.name)
    faults.checkpoint("forget")
    store.delete(key)
    for ip in record.ips():
        store.release(ip, key)
    for line in outcome.removed:
        log.info("%s: removed %s", record.name, line)
    return outcome


def heal_device(dev: str, store: StateStore, nl: Netlink,
                index: RecordIndex | None = None) -> Outcome:
    """Re-add our entries on `dev` that the kernel dropped (an administrative `link set
    down` flushes every proxy entry of the device, permanent ones included).

    Only entries recorded as ours on the device that still has the recorded ifindex are
    touched: a device that was re-created needs `reconcile`, which re-resolves names.
    A long-lived caller passes its RecordIndex, so nothing is parsed twice.
    """
    outcome = Outcome()
    with store.locked():
        index = index or RecordIndex(store)
        index.refresh()
        records = [r for r in index.records_for(dev) if r.phase == "wired"]
        if not records:
            return outcome
        if len(records) > 8:
            from vzlibvirt.netlink_bulk import BulkView

            nl = BulkView(nl)  # one dump of the proxy table instead of a get per entry
        link = nl.link(dev)
        if link is None:
            return outcome
        with nl.transaction():
            for record in records:
                for entry in record.owned_entries():
                    if getattr(entry, "dev", None) != dev or \
                            getattr(entry, "ifindex", None) != link.index:
                        continue
                    try:
                        if not entry.present(nl) and entry.add(nl):
                            outcome.added.append(f"{record.name}: {entry.describe()}")
                    except Exception as exc:
                        log.warning("re-adding %s failed: %s", entry.describe(),
                                    error_text(exc))
    return outcome
