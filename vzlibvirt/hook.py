"""`vzlibvirt hook DRIVER OBJECT OPERATION SUBOP EXTRA`: what libvirt's hooks call.

libvirt runs the hook synchronously while it holds the domain's job, five times per
guest life, so each operation does the least it can: `prepare` validates without
netlink, `started` wires, `stopped`/`release` remove what the record lists (the second
finds nothing and returns at once), `reconnect` re-applies, and operations with nothing
to do return before lxml or pyroute2 are imported.

Wiring happens at `started` for both drivers (docs/wiring-point.md): for LXC it is the
first operation whose XML names the host-side veth, and for QEMU it lets the shim skip
`start` entirely, which keeps the five calls near the cost of a bare shell hook. LXC's
`start` reaches Python only where systemd-udevd runs: it restores the MACs udev may
have changed (veth_mac.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from vzlibvirt import netdev
from vzlibvirt.contract import (
    DOMAIN_UUID_ENV,
    DRIVERS,
    FILTER_OPS,
    GATED_OPS,
    MAX_XML_BYTES,
    NETWORK_DRIVER,
    PYTHON_OPS,
    STATE_DIR_ENV,
    STOP_OPS,
    canonical_uuid,
    record_path,
    state_key,
)
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, VzError

log = logging.getLogger("vzlibvirt")
# libvirt formats <uuid> as the second child of <domain>, before any metadata
_QUICK_UUID = re.compile(rb"^\s*<domain\b[^>]*>\s*<name>[^<]*</name>\s*<uuid>\s*"
                         rb"([0-9a-fA-F-]{32,36})\s*</uuid>")


@dataclass
class Resources:
    """What a long-lived caller (the agent) keeps between calls; empty in a hook process."""

    config: object | None = None
    netlink: object | None = None
    store: object | None = None  # the agent's StateStore: its RecordIndex sees our writes
    # the caller follows libvirt's lifecycle events and publishes a migrated guest the
    # moment it resumes (the agent with [agent] connect); without, the destination
    # publishes at `started` as for any start
    follows_events: bool = False
    # keys of domains this caller wired held back (stage incoming): the event thread
    # publishes one whose guest runs even if libvirt's resumed event never reached it
    held: set[str] = field(default_factory=set)


def main(argv: list[str], stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
         stderr: TextIO | None = None, resources: Resources | None = None,
         env: Mapping[str, str] | None = None) -> int:
    """Entry point; never lets a traceback escape (libvirt shows stderr to the user)."""
    err = stderr if stderr is not None else sys.stderr
    if len(argv) < 3:
        print("usage: vzlibvirt hook DRIVER OBJECT OPERATION [SUBOP [EXTRA]]", file=err)
        return EXIT_USAGE
    driver, obj, op = argv[0], argv[1], argv[2]
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    if driver not in DRIVERS:
        print(f"vzlibvirt: unknown hook driver {driver!r} (qemu, lxc or network)", file=err)
        return EXIT_USAGE
    _setup_logging()
    try:
        if driver == NETWORK_DRIVER:
            from vzlibvirt.network_hook import run_network_hook

            return run_network_hook(obj, op, _read(stdin))
        return DomainHook(driver, obj, op, stdin, stdout, resources or Resources(),
                          os.environ if env is None else env).run()
    except VzError as exc:
        print(exc.with_context(domain=obj if driver != NETWORK_DRIVER else None).line(),
              file=err)
        return EXIT_REFUSED
    except Exception as exc:  # the one line, never a traceback
        log.debug("internal error", exc_info=True)
        print(VzError(f"internal error: {type(exc).__name__}: {exc}", domain=obj).line(),
              file=err)
        return EXIT_REFUSED


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="vzlibvirt: %(message)s")


def _read(stdin: BinaryIO) -> bytes:
    data = stdin.read(MAX_XML_BYTES + 1)
    if len(data) > MAX_XML_BYTES:
        raise VzError(f"XML input is larger than {MAX_XML_BYTES} bytes")
    return data


class DomainHook:
    def __init__(self, driver: str, name: str, op: str, stdin: BinaryIO, stdout: BinaryIO,
                 resources: Resources, env: Mapping[str, str]):
        self.driver = driver
        self.name = name
        self.op = op
        self.stdin = stdin
        self.stdout = stdout
        self.resources = resources
        self.env = env  # the shim's call context (contract.FORWARDED_ENV)

    def run(self) -> int:
        if self.op in FILTER_OPS:
            data = _read(self.stdin)
            if self.op in PYTHON_OPS[self.driver]:  # qemu's `migrate`
                self.migrate(data)
            self.stdout.write(data)
            self.stdout.flush()
            return EXIT_OK
        if self.op in STOP_OPS:
            self.stop(_read(self.stdin))
        elif self.op in PYTHON_OPS[self.driver] or self.op in GATED_OPS.get(self.driver, {}):
            # a method of this class per operation
            getattr(self, self.op)(_read(self.stdin))
        return EXIT_OK

    @property
    def config(self):
        if self.resources.config is None:
            from vzlibvirt.config import load_config

            self.resources.config = load_config()
        return self.resources.config

    @contextlib.contextmanager
    def netlink(self):
        """The caller's long-lived netlink socket, else one for this call."""
        if self.resources.netlink is not None:
            yield self.resources.netlink
            return
        from vzlibvirt.netlink import Netlink

        with Netlink() as nl:
            yield nl

    def store(self):
        from vzlibvirt.state import StateStore

        store = self.resources.store
        if store is not None and store.root == self.config.state.dir:
            return store
        return StateStore(self.config.state.dir)

    def parse(self, data: bytes):
        from vzlibvirt.domain_xml import parse_domain
        from vzlibvirt.model import Driver

        return parse_domain(data, driver=Driver(self.driver), gateways=self.config.gateways,
                            require_uuid=True)

    # operations
    def prepare(self, data: bytes) -> None:
        from vzlibvirt.engine import check_claims

        self._check_shim()
        domain = self.parse(data)
        if domain.managed_interfaces:
            check_claims(domain, self.store())
            from vzlibvirt.bridged_checks import check_bridges_exist

            check_bridges_exist(domain, self.config)
            if self.resources.netlink is not None:  # the agent: netlink costs nothing here
                from vzlibvirt.routed import refuse_host_owned

                refuse_host_owned(domain, self.resources.netlink)

    def start(self, data: bytes) -> None:
        """LXC, where udev runs (contract.GATED_OPS): the container's veth ends, still in
        the host namespace and down, get back the MAC of their XML if udev gave them
        one of its own (veth_mac.py)."""
        domain = self.parse(data)
        if domain.managed_interfaces:
            from vzlibvirt.veth_mac import restore_container_macs

            with self.netlink() as nl:
                restore_container_macs(domain, nl)

    def migrate(self, data: bytes) -> None:
        """The destination of a live migration: `prepare` and `started` follow at once,
        before any memory is sent, while the guest still runs on the source
        (docs/migration.md). Mark the domain so `started` holds the LAN back. XML that
        does not parse goes back unmarked: not our guest, or `prepare` refuses it."""
        try:
            domain = self.parse(data)
        except VzError:
            return
        if domain.managed_interfaces:
            self.store().mark_incoming(domain.key)

    def started(self, data: bytes) -> None:
        key = self._quick_key(data)
        if key is not None:
            record = self.store().load(key)
            if record is not None and record.wired_on(netdev.ifindex):
                return  # a repeated call
        domain = self.parse(data)
        if domain.managed_interfaces:
            from vzlibvirt.state import Stage

            incoming = self.store().take_incoming(domain.key)
            held = incoming and self.resources.follows_events
            self._wire(domain, stage=Stage.INCOMING if held else Stage.PUBLISHED,
                       probe=not incoming)
            if held:
                self.resources.held.add(domain.key)

    def reconnect(self, data: bytes) -> None:
        domain = self.parse(data)
        if domain.managed_interfaces or (
                domain.uuid is not None and self.store().load(domain.key) is not None):
            self._wire(domain)

    def stop(self, data: bytes) -> None:
        key = self._env_key() or self._quick_key(data) or self._parsed_key(data)
        if key is None:
            return  # a foreign domain whose <uuid> we cannot read: nothing of it is ours
        store = self.store()
        store.take_incoming(key)  # a migration that failed before `started`
        self.resources.held.discard(key)
        if not record_path(self.config.state.dir, key).exists():
            return  # nothing recorded: a refused start, or the second of stopped/release
        from vzlibvirt.engine import unwire

        with self.netlink() as nl:
            unwire(key, store, nl)

    def _wire(self, domain, **how) -> None:
        from vzlibvirt.engine import wire

        with self.netlink() as nl:
            wire(domain, self.config, self.store(), nl, **how)

    def _env_key(self) -> str | None:
        """The shim read the <uuid> itself (and so consumed the XML) for stop operations."""
        text = self.env.get(DOMAIN_UUID_ENV)
        if not text:
            return None
        try:
            return state_key(self.driver, canonical_uuid(text))
        except ValueError:
            raise VzError(f"invalid domain UUID {text[:40]!r} from the hook shim") from None

    def _parsed_key(self, data: bytes) -> str | None:
        """None for a foreign domain whose <uuid> we cannot read: nothing of it is ours."""
        domain = self.parse(data)
        return domain.key if domain.uuid is not None else None

    def _check_shim(self) -> None:
        """Shims bake in the state dir; a config changed since install-hooks would make
        them look for records in the wrong place, so refuse to start guests until then."""
        baked = self.env.get(STATE_DIR_ENV)
        if baked is not None and baked != str(self.config.state.dir):
            raise VzError(f"the hook shims look for state in {baked}, the config says "
                          f"{self.config.state.dir}: run 'vzlibvirt install-hooks' again")

    def _quick_key(self, data: bytes) -> str | None:
        """The state key without lxml: libvirt's own formatting puts <uuid> up front."""
        m = _QUICK_UUID.match(data[:4096])
        if m is None:
            return None
        try:
            return state_key(self.driver, canonical_uuid(m.group(1).decode()))
        except ValueError:
            return None

