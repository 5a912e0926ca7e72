"""The lab host's neighbour and routing tables, printed the way the seed shows
`arp -n` and `route -n` (read through `ip -j` inside the lab netns)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

Runner = Callable[[list[str]], str]  # runs an `ip` command in the lab host, returns stdout


def _ip_json(run: Runner, *args: str) -> list[dict]:
    out = run(["ip", "-j", *args]).strip()
    return json.loads(out) if out else []


def arp_rows(run: Runner) -> list[tuple[str, str, str, str, str, str]]:
    """(Address, HWtype, HWaddress, Flags, Mask, Iface): learnt entries C, proxy MP."""
    rows = []
    for n in _ip_json(run, "-4", "neigh", "show"):
        if n.get("lladdr") and "FAILED" not in n.get("state", []):
            flags = "CM" if "PERMANENT" in n.get("state", []) else "C"
            rows.append((n["dst"], "ether", n["lladdr"], flags, "", n["dev"]))
    for n in _ip_json(run, "-4", "neigh", "show", "proxy"):
        rows.append((n["dst"], "*", "*", "MP", "", n["dev"]))
    return rows


def route_rows(run: Runner) -> list[tuple[str, ...]]:
    """(Destination, Gateway, Genmask, Flags, Metric, Ref, Use, Iface) of table main."""
    rows = []
    for r in _ip_json(run, "-4", "route", "show", "table", "main"):
        dst = r["dst"]
        net = ipaddress.ip_network("0.0.0.0/0" if dst == "default" else
                                   (dst if "/" in dst else f"{dst}/32"))
        flags = "U" + ("G" if r.get("gateway") else "") + ("H" if net.prefixlen == 32 else "")
        rows.append((
            "default" if dst == "default" else str(net.network_address),
            r.get("gateway", "*"), str(net.netmask), flags, str(r.get("metric", 0)), "0", "0",
            r["dev"],
        ))
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines)


def arp_n(run: Runner) -> str:
    return format_table(("Address", "HWtype", "HWaddress", "Flags", "Mask", "Iface"),
                        arp_rows(run))


def route_n(run: Runner) -> str:
    return "Kernel IP routing table\n" + format_table(
        ("Destination", "Gateway", "Genmask", "Flags", "Metric", "Ref", "Use", "Iface"),
        route_rows(run),
    )
