"""`vzlibvirt bridge create NAME [--uplink DEV]` / `bridge delete NAME`: the host bridge.

With an uplink, the bridge takes the uplink's MTU and MAC (so DHCP reservations and
switch port security keep seeing the same MAC), the uplink becomes its port, and the
uplink's addresses and configured routes (the default route included) move onto it.
`delete` moves them back. Both are all or nothing, like a wire: every step is recorded
with its undo, and a failure undoes the steps done so far, newest first, so the uplink
ends exactly as it was. What was moved is written to `<state dir>/bridges/NAME.json`
before the first change, so `delete` restores exactly that, also after a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vzlibvirt import faults
from vzlibvirt.addresses import AddressError, parse_ifname
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, VzError
from vzlibvirt.fsutil import atomic_write
from vzlibvirt.netlink import error_text
from vzlibvirt.netlink_admin import IFA_F_NODAD, AddrSpec, BridgeNetlink, RouteSpec
from vzlibvirt.reverter import Reverter
from vzlibvirt.state import StateStore

FORMAT_VERSION = 1


@dataclass
class BridgeRecord:
    """What `create` did, so `delete` can undo exactly that."""

    bridge: str
    uplink: str | None = None
    phase: str = "creating"  # "creating" (written ahead) | "created"
    uplink_mtu: int | None = None
    uplink_mac: str | None = None
    addresses: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BridgeRecord:
        data = dict(data)
        if data.pop("version", None) != FORMAT_VERSION:
            raise VzError("bridge record has an unsupported format")
        return cls(**data)


class BridgeStore:
    def __init__(self, state_dir: Path):
        self.states = StateStore(state_dir)
        self.dir = Path(state_dir) / "bridges"

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def load(self, name: str) -> BridgeRecord | None:
        try:
            return BridgeRecord.from_json(json.loads(self.path(name).read_bytes()))
        except FileNotFoundError:
            return None

    def save(self, rec: BridgeRecord) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path(rec.bridge), json.dumps(rec.to_json(), indent=1).encode())

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(name).unlink()


def _step(revert: Reverter, what: str, do: Callable[[], object],
          undo: Callable[[], object]) -> None:
    """Run one step and register its undo once it succeeded; a netlink error becomes
    the one-line refusal `cannot <step>: <reason>`."""
    faults.checkpoint(what)
    try:
        do()
    except VzError:
        raise
    except Exception as exc:
        raise VzError(f"cannot {what}: {error_text(exc)}") from None
    revert.add(undo, what)


def _undo(revert: Reverter) -> list[str]:
    """Undo the steps done, newest first; what could not be undone."""
    return [f"undo of '{what}' failed: {exc}" for what, exc in revert.fail()]


def _ignore(call: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):
            call()
    return run


def _label(spec, old: str, new: str) -> str | None:
    """An IPv4 label `old[:suffix]` becomes `new[:suffix]` (labels start with the name)."""
    if not spec.label or not spec.label.startswith(old):
        return None
    label = new + spec.label[len(old):]
    return label if len(label) <= 15 else None


class BridgeAdmin:
    def __init__(self, nl, store: BridgeStore):
        self.nl = nl
        self.store = store

    # create
    def create(self, name: str, uplink: str | None) -> str:
        nl = self.nl
        rec = self.store.load(name)
        if rec is not None and rec.phase != "created":
            self.delete(name, interrupted=True)  # a crash mid-create: finish undoing it
            rec = None
        br = nl.link(name)
        if br is not None and br.kind != "bridge":
            raise VzError(f"{name} exists and is not a bridge")
        if uplink is None:
            if br is None:
                return self._create_plain(name)
            if rec is not None and rec.uplink:
                raise VzError(f"bridge {name} exists with uplink {rec.uplink}")
            return f"bridge {name} already exists"
        if uplink == name:
            raise VzError("a bridge cannot be its own uplink")
        up = nl.link(uplink)
        if up is None:
            raise VzError(f"uplink {uplink} does not exist")
        if br is not None:
            if up.master == br.index:
                return f"bridge {name} already exists with uplink {uplink}"
            if rec is not None and rec.uplink:
                raise VzError(f"bridge {name} exists with another uplink ({rec.uplink})")
            raise VzError(f"bridge {name} already exists without uplink {uplink}; "
                          f"delete it first")
        if up.master is not None:
            master = nl.link_by_index(up.master)
            raise VzError(f"uplink {uplink} is already enslaved to "
                          f"{master.name if master else up.master}")
        if up.kind == "bridge":
            raise VzError(f"uplink {uplink} is itself a bridge")
        return self._create_with_uplink(name, up)

    def _create_plain(self, name: str) -> str:
        rec = BridgeRecord(bridge=name)
        self.store.save(rec)
        revert = Reverter()
        box: dict[str, int] = {}
        try:
            _step(revert, f"create bridge {name}",
                  lambda: box.setdefault("br", self.nl.bridge_add(name, None, None)),
                  lambda: self.nl.link_del(box["br"]))
            _step(revert, f"set {name} up", lambda: self.nl.set_up(box["br"]), lambda: None)
        except BaseException:
            self._fail(revert, name)
            raise
        rec.phase = "created"
        self.store.save(rec)
        return f"bridge {name} created (guests only, no uplink)"

    def _create_with_uplink(self, name: str, up) -> str:
        nl = self.nl
        try:
            routes = nl.route_specs(up.index)
        except ValueError as exc:
            raise VzError(f"uplink {up.name}: {exc}") from None
        addrs = nl.addr_specs(up.index)
        rec = BridgeRecord(bridge=name, uplink=up.name, uplink_mtu=up.mtu, uplink_mac=up.mac,
                           addresses=[asdict(a) for a in addrs],
                           routes=[asdict(r) for r in routes])
        self.store.save(rec)  # written ahead: a crash from here on is undone by delete
        revert = Reverter()
        box: dict[str, int] = {}
        upi = up.index
        try:
            _step(revert, f"create bridge {name} (mtu {up.mtu}, mac {up.mac})",
                  lambda: box.setdefault("br", nl.bridge_add(name, up.mac, up.mtu)),
                  lambda: nl.link_del(box["br"]))
            _step(revert, f"enslave {up.name} to {name}",
                  lambda: nl.set_master(upi, box["br"]), lambda: nl.set_master(upi, None))
            _step(revert, f"set {name} up", lambda: nl.set_up(box["br"]), lambda: None)
            # Routes leave before their addresses (a gateway route needs its subnet), then
            # addresses leave newest first (removing a primary drops its secondaries).
            for r in routes:
                _step(revert, f"remove route {r.describe()} from {up.name}",
                      lambda r=r: nl.route_del_spec(upi, r),
                      lambda r=r: nl.route_add_spec(upi, r))
            for a in reversed(addrs):
                _step(revert, f"remove address {a.address}/{a.prefixlen} from {up.name}",
                      lambda a=a: nl.addr_del(upi, a.address, a.prefixlen),
                      lambda a=a: nl.addr_add_spec(upi, a, label=a.label))
            for a in addrs:
                _step(revert, f"add address {a.address}/{a.prefixlen} to {name}",
                      lambda a=a: nl.addr_add_spec(box["br"], a, IFA_F_NODAD,
                                                   _label(a, up.name, name)),
                      lambda a=a: nl.addr_del(box["br"], a.address, a.prefixlen))
            for r in routes:
                _step(revert, f"add route {r.describe()} to {name}",
                      lambda r=r: nl.route_add_spec(box["br"], r),
                      lambda r=r: nl.route_del_spec(box["br"], r))
            faults.checkpoint("commit")
        except BaseException:
            self._fail(revert, name)
            raise
        rec.phase = "created"
        self.store.save(rec)
        return (f"bridge {name} created over {up.name} (mtu {up.mtu}, mac {up.mac}); moved "
                f"{len(addrs)} addresses and {len(routes)} routes")

    def _fail(self, revert: Reverter, name: str) -> None:
        failed = _undo(revert)
        if failed:  # keep the record: `delete` can finish the job
            raise VzError(f"{failed[0]} (state kept in {self.store.path(name)})")
        self.store.delete(name)

    # delete
    def delete(self, name: str, interrupted: bool = False) -> str:
        nl = self.nl
        rec = self.store.load(name)
        br = nl.link(name)
        if rec is None:
            if br is None:
                return f"bridge {name} does not exist: nothing to do"
            raise VzError(f"bridge {name} was not made by 'vzlibvirt bridge create' "
                          f"(no record in {self.store.path(name)}): left alone")
        if br is not None and br.kind != "bridge":
            raise VzError(f"{name} is not a bridge")
        up = nl.link(rec.uplink) if rec.uplink else None
        if br is not None:
            guests = [p.name for p in nl.ports(br.index) if up is None or p.index != up.index]
            if guests and not interrupted:
                raise VzError(f"bridge {name} still has ports {', '.join(sorted(guests))}: "
                              f"stop those guests first")
        addrs = [AddrSpec(**a) for a in rec.addresses]
        routes = [RouteSpec(**r) for r in rec.routes]
        revert = Reverter()
        bri = br.index if br is not None else None
        try:
            if bri is not None:
                for r in routes:
                    _step(revert, f"remove route {r.describe()} from {name}",
                          lambda r=r: nl.route_del_spec(bri, r),
                          _ignore(lambda r=r: nl.route_add_spec(bri, r)))
                for a in reversed(addrs):
                    _step(revert, f"remove address {a.address}/{a.prefixlen} from {name}",
                          lambda a=a: nl.addr_del(bri, a.address, a.prefixlen),
                          _ignore(lambda a=a: nl.addr_add_spec(
                              bri, a, IFA_F_NODAD, _label(a, rec.uplink or "", name))))
            if up is not None:
                upi = up.index
                if bri is not None and up.master == bri:
                    _step(revert, f"release {up.name} from {name}",
                          lambda: nl.set_master(upi, None),
                          lambda: nl.set_master(upi, bri))
                for a in addrs:
                    _step(revert, f"add address {a.address}/{a.prefixlen} to {up.name}",
                          lambda a=a: nl.addr_add_spec(upi, a, label=a.label),
                          _ignore(lambda a=a: nl.addr_del(upi, a.address, a.prefixlen)))
                for r in routes:
                    _step(revert, f"add route {r.describe()} to {up.name}",
                          lambda r=r: nl.route_add_spec(upi, r),
                          _ignore(lambda r=r: nl.route_del_spec(upi, r)))
                if rec.uplink_mtu and up.mtu != rec.uplink_mtu:
                    old = up.mtu
                    _step(revert, f"set mtu {rec.uplink_mtu} on {up.name}",
                          lambda: nl.set_mtu(upi, rec.uplink_mtu),
                          lambda: nl.set_mtu(upi, old))
            if bri is not None:
                faults.checkpoint("forget")  # past this the bridge is gone: no undo
                _step(revert, f"delete bridge {name}", lambda: nl.link_del(bri), lambda: None)
        except BaseException:
            failed = _undo(revert)
            if failed:
                raise VzError(f"{failed[0]} (state kept in {self.store.path(name)})") from None
            raise
        self.store.delete(name)
        if up is None and rec.uplink:
            return f"bridge {name} deleted; uplink {rec.uplink} is gone, nothing moved back"
        moved = f"; moved {len(addrs)} addresses and {len(routes)} routes back to {rec.uplink}"
        return f"bridge {name} deleted" + (moved if rec.uplink else "")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vzlibvirt bridge",
                                description="make or remove a host bridge for bridged guests")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create NAME; with --uplink, move DEV's addresses "
                                      "and routes onto it")
    c.add_argument("name")
    c.add_argument("--uplink", metavar="DEV")
    d = sub.add_parser("delete", help="delete NAME, moving its uplink's addresses back")
    d.add_argument("name")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        name = parse_ifname(args.name, "bridge name")
        uplink = parse_ifname(args.uplink, "uplink") if getattr(args, "uplink", None) else None
        return _run(args.action, name, uplink)
    except AddressError as exc:
        print(VzError(str(exc)).line(), file=sys.stderr)
        return EXIT_REFUSED
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED


def _run(action: str, name: str, uplink: str | None) -> int:
    from vzlibvirt.config import load_config

    config = load_config()
    store = BridgeStore(config.state.dir)
    with store.states.locked(), BridgeNetlink() as nl:
        admin = BridgeAdmin(nl, store)
        try:
            text = admin.create(name, uplink) if action == "create" else admin.delete(name)
        except VzError as exc:
            raise VzError(f"bridge {action} {name}: {exc.reason}") from None
    print(f"vzlibvirt: {text}")
    return EXIT_OK
