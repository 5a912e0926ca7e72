"""`vzlibvirt status [--json]`: every wired interface and whether its entries are there.

The state records what we applied; status asks the kernel about each entry, so drift
(a route deleted by hand, proxy entries flushed by an uplink going down) shows up.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vzlibvirt.config import load_config
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError
from vzlibvirt.state import StateStore


def collect(store: StateStore, nl) -> list[dict[str, Any]]:
    """One dict per wired interface, each entry with `present`."""
    rows = []
    for rec in store.records():
        for irec in rec.interfaces:
            link = nl.link(irec.host_dev)
            entries = []
            for applied in irec.entries:
                entries.append({
                    "entry": applied.entry.describe(),
                    "kind": applied.entry.kind,
                    "ours": applied.owned,
                    "present": bool(applied.entry.present(nl)),
                })
            rows.append({
                "domain": rec.name, "driver": rec.driver, "uuid": rec.uuid,
                "phase": rec.phase, "mac": irec.mac, "mode": irec.mode,
                "ips": irec.ips, "host_dev": irec.host_dev,
                "host_dev_present": link is not None and link.index == irec.ifindex,
                "neighbour_devs": irec.neighbour_devs,
                "entries": entries,
                "ok": all(e["present"] for e in entries) and rec.phase == "wired",
            })
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no wired interfaces"
    head = ("DOMAIN", "MODE", "MAC", "IPS", "HOST DEV", "NEIGHBOUR DEVS", "STATE")
    table = [head]
    for r in rows:
        missing = [e for e in r["entries"] if not e["present"]]
        state = "ok" if r["ok"] else (f"DRIFT ({len(missing)} missing)" if missing
                                      else f"incomplete ({r['phase']})")
        dev = r["host_dev"] + ("" if r["host_dev_present"] else " (gone)")
        table.append((r["domain"], r["mode"], r["mac"], ",".join(r["ips"]) or "-", dev,
                      ",".join(r["neighbour_devs"]) or "-", state))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    for r in rows:
        for e in r["entries"]:
            if not e["present"]:
                lines.append(f"  {r['domain']} {r['mac']}: missing: {e['entry']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vzlibvirt status",
                                     description="Show every wired interface and its entries.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        config = load_config()
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    from vzlibvirt.netlink import Netlink

    with Netlink() as nl:
        rows = collect(StateStore(config.state.dir), nl)
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return EXIT_OK
