"""`vzlibvirt lab up|demo|down|status`: the self-contained lab (see docs/lab.md)."""

from __future__ import annotations

import argparse
import sys

from .sh import LabError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vzlibvirt lab",
        description="A private libvirtd in network namespaces, with Computer X on its LAN.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build images (cached) and start the lab; idempotent")
    up.add_argument("--no-hooks", action="store_true",
                    help="do not install the vzlibvirt hooks (lab debugging only)")
    up.add_argument("--no-agent", action="store_true",
                    help="no resident agent: every hook runs the engine in-process")
    demo = sub.add_parser("demo", help="up, show the seed's four figures (routed and "
                                       "bridged containers and VMs), down")
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.add_argument("--no-vms", action="store_true", help="containers only (faster)")
    sub.add_parser("down", help="remove every namespace, process, mount and file of the lab")
    sub.add_parser("status", help="say whether the lab is up and list its guests")
    system = sub.add_parser("system", help="a Debian 12 VM with systemd and libvirtd on "
                                           "the lab's LAN: a disposable real host")
    system.add_argument("action", choices=("up", "test", "ssh", "down"),
                        help="up: boot it and install vzlibvirt as the README says; test: "
                             "the system tests; ssh: a root shell; down: remove it")
    system.add_argument("--no-install", action="store_true",
                        help="up: a bare Debian 12 libvirt host, without vzlibvirt")
    args = parser.parse_args(argv)
    if args.cmd == "system":
        from .system_cli import run_system

        return run_system(args.action, install=not args.no_install)

    from .lab import Lab  # after argparse, so `--help` stays instant
    from .lock import lab_lock

    lab = Lab()
    try:
        with lab_lock(lab.paths):
            return _dispatch(lab, args)
    except LabError as exc:
        print(f"vzlibvirt lab {args.cmd}: {exc}", file=sys.stderr)
        return 1


def _dispatch(lab, args) -> int:
    if args.cmd == "up":
        lab.up(hooks=not args.no_hooks, agent=not args.no_agent)
    elif args.cmd == "down":
        lab.down()
    elif args.cmd == "status":
        return _status(lab)
    else:
        from .demo import run_demo

        return run_demo(lab, keep=args.keep, vms=not args.no_vms)
    return 0


def _status(lab) -> int:
    if not lab.is_up():
        print("lab is down")
        return 3
    print(f"lab is up at {lab.paths.root}")
    for drv in ("lxc", "qemu"):
        print(lab.virsh(drv, "list", "--all").stdout.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
