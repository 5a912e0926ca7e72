"""Live migration: what the agent does when libvirt reports a guest moving.

libvirt runs the destination's `migrate`, `prepare`, `start` and `started` hooks before
any memory is sent, while the guest still runs on the source, and no hook at all when
the guest really moves (docs/migration.md). So the destination's hooks prepare without
telling the LAN (state.Stage.INCOMING), and libvirt's lifecycle events say when to
publish and withdraw (engine.withdraw):

| event (detail)          | where                               | action   |
|-------------------------|-------------------------------------|----------|
| resumed (migrated)      | destination: the guest runs here    | publish  |
| resumed (migrated)      | source: the migration failed        | publish  |
| suspended (migrated)    | source: paused for the switch-over  | withdraw |
| stopped (migrated)      | source: the guest left              | withdraw |

`publish` adds the proxy entries (and routes) and announces even when nothing was
missing, so a failed migration leaves the source re-announced; `withdraw` removes the
source's routes and proxy entries and keeps the record until its `stopped` hook (the
fallback when the agent missed the events) removes the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vzlibvirt.engine import Outcome, wire
from vzlibvirt.state import Stage, StateStore

if TYPE_CHECKING:
    from vzlibvirt.config import Config
    from vzlibvirt.netlink import Netlink

# libvirt's virDomainEventType and details (libvirt-domain.h), spelled here so that
# deciding what an event means needs no libvirt import
EVENT_STARTED, EVENT_SUSPENDED, EVENT_RESUMED, EVENT_STOPPED = 2, 3, 4, 5
SUSPENDED_MIGRATED = 1
RESUMED_MIGRATED = 1
STOPPED_MIGRATED = 3
PUBLISH, WITHDRAW = "publish", "withdraw"
_ACTIONS = {
    (EVENT_RESUMED, RESUMED_MIGRATED): PUBLISH,
    (EVENT_SUSPENDED, SUSPENDED_MIGRATED): WITHDRAW,
    (EVENT_STOPPED, STOPPED_MIGRATED): WITHDRAW,
}


def action(event: int, detail: int) -> str | None:
    """PUBLISH, WITHDRAW or None for one lifecycle event."""
    return _ACTIONS.get((event, detail))


def publish(data: bytes, driver: str, config: Config, store: StateStore,
            nl: Netlink, only_held: bool = False) -> Outcome | None:
    """The guest runs here now (its live XML): every entry, and the LAN told at once.
    None when this host has no record of it (a hook refused it, or it is not ours), or,
    with `only_held` (a reconnect's check for a resumed event it missed), when its
    record is published already."""
    from vzlibvirt.domain_xml import parse_domain
    from vzlibvirt.model import Driver

    domain = parse_domain(data, driver=Driver(driver), gateways=config.gateways,
                          require_uuid=True)
    record = store.load(domain.key) if domain.managed_interfaces else None
    if record is None or (only_held and record.stage is Stage.PUBLISHED):
        return None
    return wire(domain, config, store, nl, stage=Stage.PUBLISHED, announce=True)

