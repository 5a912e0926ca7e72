"""`vzlibvirt plan [--driver qemu|lxc] FILE`: validate a domain XML and print the plan.

Needs no root and imports no netlink: it is safe to run on any copy of a domain XML.
"""

from __future__ import annotations

import argparse
import sys

from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vzlibvirt plan",
                                     description="Validate a domain XML and print the plan.")
    parser.add_argument("--driver", choices=("qemu", "lxc"))
    parser.add_argument("file", help="domain XML file, or - for standard input")
    args = parser.parse_args(argv)

    from vzlibvirt.config import load_config
    from vzlibvirt.domain_xml import MAX_XML_BYTES, parse_domain
    from vzlibvirt.model import Driver
    from vzlibvirt.plan import describe_plan

    try:
        config = load_config()
        data = _read(args.file, MAX_XML_BYTES)
        domain = parse_domain(data, driver=Driver(args.driver) if args.driver else None,
                              gateways=config.gateways)
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    print("\n".join(describe_plan(domain, config)))
    return EXIT_OK


def _read(path: str, limit: int) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except OSError as exc:
        raise VzError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise VzError(f"XML input is larger than {limit} bytes")
    return data
