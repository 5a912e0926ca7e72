"""`vzlibvirt routing-config bird|frr --asn N --router-id IP --peer IP:ASN...
--export PREFIX...`: print the routing daemon's configuration (routing_config.py).

Bad arguments end with exit 2 (usage) and one line on stderr, never a half-written
configuration: a daemon fed a wrong one could announce what is not ours.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from vzlibvirt.errors import EXIT_OK, EXIT_USAGE
from vzlibvirt.routing_config import RENDERERS, build_spec

PROG = "vzlibvirt routing-config"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own: usage and a line
        _fail(message)


def _fail(message: str) -> NoReturn:
    text = " ".join("".join(c if c.isprintable() else " " for c in message).split())
    print(f"{PROG}: {text}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def main(argv: list[str]) -> int:
    parser = _Parser(prog=PROG, description="Print a BIRD 2 or FRR 8.4 configuration that "
                     "announces exactly vzlibvirt's guest routes (docs/bgp.md).")
    parser.add_argument("daemon", choices=sorted(RENDERERS))
    parser.add_argument("--asn", required=True, help="this host's AS number")
    parser.add_argument("--router-id", required=True, help="this host's BGP router ID (IPv4)")
    parser.add_argument("--peer", action="append", default=[], metavar="IP:ASN",
                        help="a BGP neighbour and its AS (IPv6: [IP]:ASN); repeatable")
    parser.add_argument("--export", action="append", default=[], metavar="PREFIX",
                        help="announce guest /32 and /128 routes inside PREFIX; repeatable")
    args = parser.parse_args(argv)
    try:
        spec = build_spec(args.asn, args.router_id, args.peer, args.export)
    except ValueError as exc:
        _fail(str(exc))
    sys.stdout.write(RENDERERS[args.daemon](spec))
    return EXIT_OK
