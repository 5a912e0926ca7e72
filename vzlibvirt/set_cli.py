"""`vzlibvirt set DOMAIN ...`: the `prlctl set` of vzlibvirt.

Order, so that a refused change changes nothing: the change is made on copies of the
domain's XML and checked with the hook's rules (vz_edit), then on the host by the agent
(another guest's IP, a host address, an address a LAN host answers; in-process when no
agent runs); only then is the persistent definition written and, for a running domain,
the live `<vz:network>` set and applied on the host by the same engine as the hooks. A
running container also gets the address on (or off) its own interface. `set` returns
when the host is wired, or says why not and puts the metadata back.
"""

from __future__ import annotations

import argparse
import sys

from vzlibvirt.config import Config, driver_of, load_config
from vzlibvirt.contract import XMLNS
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, VzError
from vzlibvirt.vz_edit import Change, Edit, current_metadata, plan_edit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vzlibvirt set",
                                description="Change a domain's vzlibvirt network settings, "
                                            "persistently and, when it runs, live.")
    p.add_argument("domain")
    p.add_argument("--iface", metavar="MAC", help="the interface (optional with one routed)")
    p.add_argument("--ipadd", action="append", default=[], metavar="IP")
    p.add_argument("--ipdel", action="append", default=[], metavar="IP|all")
    p.add_argument("--mode", choices=("routed", "bridged"))
    p.add_argument("--bridge", metavar="BR")
    p.add_argument("--filter", choices=("none", "mac", "mac-ip"))
    p.add_argument("--connect", metavar="URI", help="libvirt URI; default: [agent] connect")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    change = Change(iface=args.iface, ipadd=tuple(args.ipadd), ipdel=tuple(args.ipdel),
                    mode=args.mode, bridge=args.bridge, filter=args.filter)
    if change == Change(iface=args.iface):
        print("vzlibvirt set: nothing to change (--ipadd, --ipdel, --mode, --bridge, "
              "--filter)", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config()
        for line in run(config, args.domain, change, args.connect):
            print(line)
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def find_domain(config: Config, name: str, uri: str | None):
    """(connection, domain, driver) of `name` on --connect or the first [agent] URI that
    has it."""
    import libvirt

    uris = [uri] if uri else list(config.agent.connect)
    libvirt.registerErrorHandler(lambda *_args: None, None)  # errors reach us as exceptions
    errors = []
    for u in uris:
        try:
            driver = driver_of(u)
        except ValueError as exc:
            raise VzError(str(exc)) from None
        try:
            conn = libvirt.open(u)
        except libvirt.libvirtError as exc:
            errors.append(f"{u}: {exc.get_error_message()}")
            continue
        try:
            return conn, conn.lookupByName(name), driver
        except libvirt.libvirtError:
            conn.close()
    why = f" ({'; '.join(errors)})" if errors else ""
    raise VzError(f"no domain named {name!r} on {', '.join(uris) or 'no URI'}{why}")


def run(config: Config, name: str, change: Change, uri: str | None) -> list[str]:
    import libvirt

    conn, dom, driver = find_domain(config, name, uri)
    try:
        running = bool(dom.isActive())
        config_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode()
        live_xml = dom.XMLDesc(0).encode() if running else None
        edit = plan_edit(config_xml, live_xml, change, config.gateways)
        target = edit.live or edit.config
        engine(config, "check" if running else "check-stopped", driver, target.xml)
        old_config = current_metadata(config_xml)
        write_config(conn, dom, edit)
        if not running:
            return summary(name, edit, "persistent; applied at the next start")
        how = "applied" if edit.config is not None else \
            "applied; live only: the interface is not in the persistent definition"
        try:
            set_metadata(dom, edit.live.metadata, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            engine(config, "apply", driver, dom.XMLDesc(0).encode())
        except (VzError, libvirt.libvirtError) as exc:
            _undo(conn, dom, config_xml, old_config, live_xml, edit)
            if isinstance(exc, VzError):
                raise exc.with_context(domain=name, mac=edit.mac) from None
            raise VzError(exc.get_error_message(), domain=name, mac=edit.mac) from None
        if driver == "lxc" and (edit.added or edit.removed):
            from vzlibvirt.guest_inside import container_netns, set_addresses

            with container_netns(dom) as fd:
                set_addresses(fd, edit.mac, edit.added, edit.removed)
        return summary(name, edit, how)
    finally:
        conn.close()


def engine(config: Config, op: str, driver: str, xml: bytes) -> None:
    """Ask the agent to check or apply; without an agent, the same code in this process."""
    from vzlibvirt.hookclient import request

    try:
        answer = request(str(config.agent.socket), [op.encode(), driver.encode(), xml])
    except (OSError, ValueError) as exc:
        raise VzError(f"the agent at {config.agent.socket} failed: {exc}") from None
    if answer is None:
        from vzlibvirt import live
        from vzlibvirt.netlink import Netlink
        from vzlibvirt.state import StateStore

        with Netlink() as nl:
            rc, err = live.serve(op, driver, xml, config, StateStore(config.state.dir), nl)
    else:
        rc, err = answer[0], answer[1].decode(errors="replace")
    if rc != EXIT_OK:
        raise _Refused(err.strip().splitlines()[0] if err.strip() else "refused")


class _Refused(VzError):
    """A line the engine already formatted (domain and MAC named)."""

    def line(self) -> str:
        return self.reason


def set_metadata(dom, text: str | None, flags: int) -> None:
    import libvirt

    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, text, "vz", XMLNS, flags)


def write_config(conn, dom, edit: Edit) -> None:
    import libvirt

    if not dom.isPersistent() or edit.config is None:
        return
    try:
        if edit.config.devices_changed:  # a container's native <ip>: the whole definition
            conn.defineXML(edit.config.xml.decode())
        else:
            set_metadata(dom, edit.config.metadata, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError as exc:
        raise VzError(f"libvirt refused the change: {exc.get_error_message()}",
                      mac=edit.mac) from None


def _undo(conn, dom, config_xml: bytes, old_config: str | None, live_xml: bytes | None,
          edit: Edit) -> None:
    """Put back what `set` wrote, after the host refused to apply it."""
    import contextlib

    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        if live_xml is not None:
            set_metadata(dom, current_metadata(live_xml), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if dom.isPersistent() and edit.config is not None:
            if edit.config.devices_changed:
                conn.defineXML(config_xml.decode())
            else:
                set_metadata(dom, old_config, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def summary(name: str, edit: Edit, how: str) -> list[str]:
    parts = [f"added {', '.join(edit.added)}"] if edit.added else []
    parts += [f"removed {', '.join(edit.removed)}"] if edit.removed else []
    return [f"{name}: interface {edit.mac}: {'; '.join(parts) or 'updated'} ({how})"]
