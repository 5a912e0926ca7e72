"""`vzlibvirt reconcile [--connect URI]`: make the host match the running domains.

Runs outside the hooks (it calls the libvirt API, which a hook must never do): after a
reboot, a libvirtd crash or an uplink re-created, it re-wires every running domain
(idempotent: only missing entries are added) and unwires records whose domain is gone.
Records of a driver whose connection failed are left alone: unknown is not gone.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vzlibvirt.config import Config, load_config
from vzlibvirt.contract import key_driver
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError

DEFAULT_URIS = ("qemu:///system", "lxc:///system")


@dataclass
class Report:
    rewired: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    checked: int = 0

    def lines(self) -> list[str]:
        out = []
        for name, items in self.rewired.items():
            out += [f"{name}: added {i}" for i in items]
        for name, items in self.removed.items():
            out += [f"{name}: removed {i}" for i in items] or [f"{name}: forgotten (gone)"]
        out += [f"{name}: FAILED: {why}" for name, why in self.failed.items()]
        changed = len(self.rewired) + len(self.removed)
        out.append(f"reconcile: {self.checked} running domains checked, {changed} changed, "
                   f"{len(self.failed)} failed")
        return out


def driver_of(uri: str) -> str:
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme not in ("qemu", "lxc"):
        raise VzError(f"unsupported connection URI {uri!r} (qemu:// or lxc://)")
    return scheme


def running_domains(uri: str) -> list[bytes]:
    """Live XML of every running domain on `uri` (target devices included)."""
    import libvirt

    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise VzError(f"cannot connect to {uri}: {exc.get_error_message()}") from None
    try:
        return [dom.XMLDesc(0).encode() for dom in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
    finally:
        conn.close()


def reconcile(config: Config, domains_by_driver: dict[str, list[bytes]], nl) -> Report:
    """Pure of libvirt: takes the live XML per driver, so tests can drive it directly."""
    from vzlibvirt.domain_xml import parse_domain
    from vzlibvirt.engine import unwire, wire
    from vzlibvirt.model import Driver
    from vzlibvirt.netlink_bulk import BulkView
    from vzlibvirt.state import StateStore

    store = StateStore(config.state.dir)
    report = Report()
    nl = BulkView(nl)  # presence answered from one dump per table, not a request per entry
    alive: set[str] = set()
    for driver, xmls in domains_by_driver.items():
        for data in xmls:
            try:
                domain = parse_domain(data, driver=Driver(driver), gateways=config.gateways,
                                      require_uuid=True)
            except VzError as exc:
                report.failed[exc.domain or "?"] = exc.reason
                continue
            alive.add(domain.key)
            report.checked += 1
            if not domain.managed_interfaces and store.load(domain.key) is None:
                continue
            try:
                outcome = wire(domain, config, store, nl)
            except VzError as exc:
                report.failed[domain.name] = exc.reason
                continue
            if outcome.added or outcome.removed:
                report.rewired[domain.name] = outcome.added + outcome.removed
    for key in store.domain_keys():
        driver = key_driver(key)
        if driver not in domains_by_driver or key in alive:
            continue
        record = store.load(key)
        name = record.name if record else key
        try:
            report.removed[name] = unwire(key, store, nl).removed
        except VzError as exc:
            report.failed[name] = exc.reason
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vzlibvirt reconcile",
        description="Re-wire running domains and remove what belongs to domains that are gone.")
    parser.add_argument("--connect", action="append", metavar="URI",
                        help="libvirt URI (repeatable); default: qemu:///system and "
                             "lxc:///system")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        uris = args.connect or list(DEFAULT_URIS)
        by_driver: dict[str, list[bytes]] = {}
        for uri in uris:
            driver = driver_of(uri)
            try:
                by_driver.setdefault(driver, []).extend(running_domains(uri))
            except VzError as exc:
                if args.connect:
                    raise
                print(f"vzlibvirt: reconcile: skipping {driver}: {exc.reason}",
                      file=sys.stderr)
                by_driver.pop(driver, None)
        from vzlibvirt.netlink import Netlink

        with Netlink() as nl:
            report = reconcile(config, by_driver, nl)
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    print("\n".join(report.lines()))
    return EXIT_REFUSED if report.failed else EXIT_OK
