"""The `vzlibvirt` command: a table of subcommands, each imported only when used.

Every subcommand is `module:function` taking its own argv and returning the exit code,
so `vzlibvirt hook ...` pays for nothing but itself.
"""

from __future__ import annotations

import importlib
import sys

from vzlibvirt.errors import EXIT_REFUSED, EXIT_USAGE, VzError

COMMANDS: dict[str, tuple[str, str]] = {
    "hook": ("vzlibvirt.hook:main", "what libvirt's hook shims call (XML on stdin)"),
    "plan": ("vzlibvirt.plan_cli:main", "dry run: validate a domain XML, print the plan"),
    "status": ("vzlibvirt.status:main", "show wired interfaces and whether each entry is there"),
    "reconcile": ("vzlibvirt.reconcile:main", "re-wire running domains, clean up gone ones"),
    "set": ("vzlibvirt.set_cli:main", "change a domain's IPs / mode, persistently and live"),
    "show": ("vzlibvirt.show_cli:main", "a domain's vz configuration and live wiring"),
    "agent": ("vzlibvirt.agent:main", "run the resident agent (fast hooks, re-publishing)"),
    "dhcp": ("vzlibvirt.dhcp_cli:main", "run and supervise dnsmasq for routed VMs' DHCP"),
    "install-hooks": ("vzlibvirt.hookinstall:install_main", "install the libvirt hook shims"),
    "uninstall-hooks": ("vzlibvirt.hookinstall:uninstall_main", "remove our hook shims"),
    "bridge": ("vzlibvirt.bridge_admin:main", "bridge create NAME [--uplink DEV] | delete NAME"),
    "routing-config": ("vzlibvirt.routing_cli:main",
                       "print a BIRD/FRR configuration announcing the guest routes (BGP)"),
    "lab": ("vzlibvirt.lab.cli:main", "the self-contained lab: up | demo | down"),
}

USAGE = "usage: vzlibvirt COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        from vzlibvirt import __version__

        print(f"vzlibvirt {__version__}")
        return 0
    entry = COMMANDS.get(argv[0])
    if entry is None:
        print(f"vzlibvirt: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    module, _, func = entry[0].partition(":")
    try:
        return getattr(importlib.import_module(module), func)(argv[1:])
    except VzError as exc:  # subcommands normally print their own line; this is the net
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
