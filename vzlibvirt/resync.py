"""The agent's periodic drift repair (`[agent] resync_s`): every recorded entry that the
kernel no longer holds is put back, one log line per repair.

Why: link events do not cover every loss. `ip neigh flush proxy`, a netplan or
ifupdown run, or a kernel that flushes proxy entries on carrier loss without telling
anyone (Debian 12's 6.1, docs/reliability.md) leave a routed guest off the LAN with no
event to react to. A pass reads each kernel table once (BulkView: one dump of the
addresses, routes and proxy entries, links memoised), so it costs the same few dumps
however many guests there are, and writes nothing when nothing is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vzlibvirt.entries import Address, LinkUp, ProxyNeighbour, Route
from vzlibvirt.state import RecordIndex, StateStore

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink

log = logging.getLogger("vzlibvirt.resync")
# The entry kinds that live in kernel tables a dump answers; settings (sysctls) are not
# dropped by the events above, and re-wiring the rest is `reconcile`'s job.
REPAIRED = (LinkUp, Address, Route, ProxyNeighbour)


@dataclass
class Pass:
    """What one pass saw and did."""

    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def resync(store: StateStore, nl: Netlink, index: RecordIndex | None = None) -> Pass:
    """Compare every wired record's entries with the kernel and re-add what is missing.

    Entries on a device that no longer has the recorded ifindex are skipped (the device
    went away with its entries; the guest's stop or `reconcile` deals with that), and so
    are entries on a device that is down (routes cannot be added there; the agent
    re-publishes the moment it comes back up).
    """
    from vzlibvirt.netlink import BulkView
    from vzlibvirt.wiring import load_plugins

    load_plugins()
    done = Pass()
    with store.locked():
        index = index or RecordIndex(store)
        index.refresh()
        records = [r for r in index.all() if r.phase == "wired"]
        if not records:
            return done
        view = BulkView(nl)
        with view.transaction():
            for record in records:
                for entry in record.owned_entries():
                    if not isinstance(entry, REPAIRED):
                        continue
                    done.checked += 1
                    link = view.link_by_index(entry.ifindex)
                    if link is None or link.name != entry.dev:
                        continue
                    if not isinstance(entry, LinkUp) and not link.up:
                        continue
                    if entry.present(view):
                        continue
                    _repair(record.name, entry, view, done)
    return done


def _repair(name: str, entry, view, done: Pass) -> None:
    from vzlibvirt.netlink import error_text

    try:
        entry.add(view)
    except Exception as exc:  # one entry's failure must not stop the pass
        line = f"{name}: could not re-add {entry.describe()}: {error_text(exc)}"
        done.failed.append(line)
        log.warning("resync: %s", line)
        return
    line = f"{name}: re-added {entry.describe()}"
    done.repaired.append(line)
    log.info("resync: %s", line)
