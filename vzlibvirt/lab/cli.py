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
    hosts = argparse.ArgumentParser(add_help=False)
    hosts.add_argument("--hosts", type=int, choices=(1, 2), default=1,
                       help="2: host A and host B on one LAN, for live migration")
    hosts.add_argument("--bgp", action="store_true",
                       help="with --hosts 2: a routed fabric: FRR as the top-of-rack router "
                            "on the LAN, BIRD on each host (neighbour_devs = \"none\"), "
                            "Computer Y behind the router (docs/bgp.md)")
    up = sub.add_parser("up", parents=[hosts],
                        help="build images (cached) and start the lab; idempotent")
    up.add_argument("--no-hooks", action="store_true",
                    help="do not install the vzlibvirt hooks (lab debugging only)")
    up.add_argument("--no-agent", action="store_true",
                    help="no resident agent: every hook runs the engine in-process")
    demo = sub.add_parser("demo", parents=[hosts],
                          help="up, show the seed's four figures (routed and bridged "
                               "containers and VMs), down; with --hosts 2: a routed VM "
                               "live-migrated A -> B -> A while Computer X pings it; "
                               "with --hosts 2 --bgp: the router's BGP table filling and "
                               "emptying as guests on both hosts start and stop")
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.add_argument("--no-vms", action="store_true", help="containers only (faster)")
    sub.add_parser("down", parents=[hosts],
                   help="remove every namespace, process, mount and file of the lab")
    sub.add_parser("status", parents=[hosts], help="say whether the lab is up and list its "
                                                   "guests")
    system = sub.add_parser("system", help="a Debian 12 VM with systemd and libvirtd on "
                                           "the lab's LAN: a disposable real host")
    system.add_argument("action", choices=("up", "test", "ssh", "down"),
                        help="up: boot it and install vzlibvirt as the README says; test: "
                             "the system tests; ssh: a root shell; down: remove it")
    system.add_argument("--no-install", action="store_true",
                        help="up: a bare Debian 12 libvirt host, without vzlibvirt")
    args = parser.parse_args(argv)
    if getattr(args, "bgp", False) and args.hosts != 2:
        parser.error("--bgp needs --hosts 2")
    if args.cmd == "system":
        from .system_cli import run_system

        return run_system(args.action, install=not args.no_install)

    from .lab import Lab  # after argparse, so `--help` stays instant
    from .lock import lab_lock

    lab = Lab()
    try:
        with lab_lock(lab.paths):  # one lock for both labs: they share the image cache
            if args.hosts == 2:
                return _dispatch_two(args)
            return _dispatch(lab, args)
    except LabError as exc:
        print(f"vzlibvirt lab {args.cmd}: {exc}", file=sys.stderr)
        return 1


def _dispatch(lab, args) -> int:
    if args.cmd == "up":
        lab.up(hooks=not args.no_hooks, agent=not args.no_agent)
    elif args.cmd == "down":  # everything of both labs, as `down` always did
        lab.down()
        from .twohosts import TwoHostLab

        labs = TwoHostLab()
        if labs.exists():
            labs.down()
    elif args.cmd == "status":
        return _status(lab)
    else:
        from .demo import run_demo

        return run_demo(lab, keep=args.keep, vms=not args.no_vms)
    return 0


def _dispatch_two(args) -> int:
    from .twohosts import TwoHostLab

    labs = TwoHostLab(bgp=args.bgp)
    if args.cmd == "up":
        labs.up(hooks=not args.no_hooks, agent=not args.no_agent)
    elif args.cmd == "down":
        labs.down()
    elif args.cmd == "status":
        return max(_status(h) for h in labs.hosts)
    elif args.bgp:
        from .bgp_demo import run_demo

        return run_demo(labs, keep=args.keep)
    else:
        from .migration_demo import run_demo

        return run_demo(labs, keep=args.keep)
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
