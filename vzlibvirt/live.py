"""Changes to running guests that no hook sees: pure of libvirt, shared by the agent's
libvirt event thread, its socket (`vzlibvirt set` asks it to check and apply) and
`set`'s in-process fallback, so every change goes through the same engine, record and
lock as the hooks.

Each function takes the domain's *live* XML, fetched by the caller outside the agent's
work lock: a libvirt call made while holding it could wait for a domain whose hook waits
for the agent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vzlibvirt import netdev
from vzlibvirt.config import Config
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.engine import Outcome, check_claims, unwire, wire
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError
from vzlibvirt.model import Domain, Driver
from vzlibvirt.modes import plugin_for
from vzlibvirt.state import Stage, StateStore
from vzlibvirt.wiring import WireContext

if TYPE_CHECKING:
    from vzlibvirt.netlink import Netlink

log = logging.getLogger("vzlibvirt.live")


def parse_live(data: bytes, driver: str, config: Config) -> Domain:
    """A running domain's live XML; its metadata may name an interface that is not
    plugged (yet, or any more): that one is simply not wired."""
    return parse_domain(data, driver=Driver(driver), gateways=config.gateways,
                        require_uuid=True, unplugged_ok=True)


def check(data: bytes, driver: str, config: Config, store: StateStore, nl: Netlink,
          running: bool = True) -> Domain:
    """Every rule the hook applies, without a change: the XML rules, IPs of other guests,
    and for a running domain the host-side resolve (host-owned addresses, an address a
    LAN host answers, devices)."""
    domain = parse_live(data, driver, config)
    try:
        check_claims(domain, store)
    except VzError as exc:
        raise exc.with_context(domain=domain.name) from None
    if not running:
        return domain
    previous = store.load(domain.key)
    prev = {i.mac: i for i in previous.interfaces} if previous else {}
    ctx = WireContext(domain, config, nl, store,
                      previous.stage if previous else Stage.PUBLISHED)
    with nl.transaction():
        for iface in domain.managed_interfaces:
            try:
                plugin_for(iface).resolve(ctx, iface, prev.get(iface.mac or ""))
            except VzError as exc:
                raise exc.with_context(domain=domain.name, mac=iface.label) from None
    return domain


def apply(data: bytes, driver: str, config: Config, store: StateStore,
          nl: Netlink) -> Outcome | None:
    """Make the host match the running domain's live XML: new interfaces and IPs wired,
    removed ones unwired, the rest untouched (the engine's record diff). None: the domain
    is none of ours."""
    domain = parse_live(data, driver, config)
    if not domain.managed_interfaces and store.load(domain.key) is None:
        return None
    try:
        return wire(domain, config, store, nl)
    except VzError as exc:
        raise exc.with_context(domain=domain.name) from None


def forget_if_gone(key: str, store: StateStore, nl: Netlink) -> Outcome | None:
    """Unwire a domain that stopped, unless one of its host devices still exists with its
    recorded ifindex (then it runs again, or its hook has yet to run)."""
    record = store.load(key)
    if record is None:
        return None
    if any(netdev.ifindex(i.host_dev) == i.ifindex for i in record.interfaces):
        return None
    return unwire(key, store, nl)


def reconcile_driver(driver: str, xmls: list[bytes], config: Config, store: StateStore,
                     nl: Netlink) -> list[str]:
    """After (re)connecting: wire every running domain, forget records of this driver whose
    domain is gone. One line per change or failure."""
    lines: list[str] = []
    alive: set[str] = set()
    for data in xmls:
        try:
            domain = parse_live(data, driver, config)
            alive.add(domain.key)
            outcome = apply(data, driver, config, store, nl)
        except VzError as exc:
            lines.append(f"reconcile: {exc.line()}")
            continue
        if outcome is not None:
            lines += [f"{domain.name}: added {a}" for a in outcome.added]
            lines += [f"{domain.name}: removed {r}" for r in outcome.removed]
    for key in store.domain_keys():
        if not key.startswith(f"{driver}-") or key in alive:
            continue
        try:
            outcome = forget_if_gone(key, store, nl)
        except VzError as exc:
            lines.append(f"reconcile: {exc.line()}")
            continue
        if outcome is not None:
            lines.append(f"{key}: gone: removed {len(outcome.removed)} entries")
    return lines


def serve(op: str, driver: str, data: bytes, config: Config, store: StateStore,
          nl: Netlink) -> tuple[int, str]:
    """The agent's `check` / `check-stopped` / `apply` requests: (exit code, stderr line)."""
    try:
        if driver not in ("qemu", "lxc"):
            raise VzError(f"unknown driver {driver!r}")
        if op == "apply":
            outcome = apply(data, driver, config, store, nl)
            changed = outcome.added + outcome.removed if outcome else []
            return EXIT_OK, "".join(f"{c}\n" for c in changed)
        check(data, driver, config, store, nl, running=op == "check")
        return EXIT_OK, ""
    except VzError as exc:
        return EXIT_REFUSED, exc.line() + "\n"

