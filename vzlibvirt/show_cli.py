"""`vzlibvirt show DOMAIN [--json] [--connect URI]`: a domain's vz configuration (its
persistent definition) and, when it runs, its live wiring as the state records it, each
entry checked against the kernel like `status` does."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vzlibvirt.config import Config, load_config
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="vzlibvirt show",
                                description="Show a domain's vz configuration and wiring.")
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--connect", metavar="URI", help="libvirt URI; default: [agent] connect")
    args = p.parse_args(argv)
    try:
        config = load_config()
        info = collect(config, args.domain, args.connect)
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(info, indent=2) if args.json else render(info))
    return EXIT_OK


def _interfaces(domain) -> list[dict[str, Any]]:
    return [{"mac": i.mac, "type": i.type, "mode": i.mode.value if i.mode else None,
             "ips": [str(ip.address) for ip in i.ips],
             "ip_sources": [ip.source.value for ip in i.ips],
             "bridge": i.bridge, "filter": i.filter.value, "host_dev": i.host_dev,
             "guest_dev": i.guest_dev} for i in domain.interfaces]


def collect(config: Config, name: str, uri: str | None) -> dict[str, Any]:
    import libvirt

    from vzlibvirt.live import parse_live
    from vzlibvirt.set_cli import find_domain

    conn, dom, driver = find_domain(config, name, uri)
    try:
        running = bool(dom.isActive())
        persistent = parse_live(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode(), driver,
                                config)
        live = parse_live(dom.XMLDesc(0).encode(), driver, config) if running else None
    finally:
        conn.close()
    info: dict[str, Any] = {"domain": name, "driver": driver, "uuid": persistent.uuid,
                            "running": running, "config": _interfaces(persistent)}
    if live is not None:
        info["live"] = _interfaces(live)
        info["wiring"] = wiring(config, live.key)
    return info


def wiring(config: Config, key: str) -> list[dict[str, Any]]:
    """The record's interfaces, each entry with whether the kernel holds it."""
    from vzlibvirt.netlink import Netlink
    from vzlibvirt.state import StateStore

    record = StateStore(config.state.dir).load(key)
    if record is None:
        return []
    out = []
    with Netlink() as nl:
        for irec in record.interfaces:
            out.append({"mac": irec.mac, "mode": irec.mode, "host_dev": irec.host_dev,
                        "ips": irec.ips, "neighbour_devs": irec.neighbour_devs,
                        "entries": [{"entry": a.entry.describe(), "ours": a.owned,
                                     "present": bool(a.entry.present(nl))}
                                    for a in irec.entries]})
    return out


def render(info: dict[str, Any]) -> str:
    state = "running" if info["running"] else "shut off"
    lines = [f"{info['domain']} ({info['driver']}, {state})"]
    sections = [("configuration (persistent)", info["config"])]
    if "live" in info:
        sections.append(("live", info["live"]))
    for title, ifaces in sections:
        lines.append(f"  {title}:")
        for i in ifaces:
            mode = i["mode"] or "not managed"
            extra = f" bridge={i['bridge']} filter={i['filter']}" if i["mode"] == "bridged" \
                else ""
            lines.append(f"    {i['mac']} {i['type']} {mode}{extra}: "
                         f"{', '.join(i['ips']) or 'no IPs'}")
    if "wiring" in info:
        lines.append("  wiring:" if info["wiring"] else "  wiring: none recorded")
        for w in info["wiring"]:
            lines.append(f"    {w['mac']} {w['mode']} on {w['host_dev']} "
                         f"(neighbours: {', '.join(w['neighbour_devs']) or '-'})")
            for e in w["entries"]:
                mark = "ok" if e["present"] else "MISSING"
                lines.append(f"      {mark:<7} {e['entry']}")
    return "\n".join(lines)
