"""`vzlibvirt dhcp`: the DHCP supervisor (dnsmasq.py) and the IPv6 router advertiser
(ra.py) in the foreground, for hosts that do not run `vzlibvirt agent`."""

from __future__ import annotations

import argparse
import sys

from vzlibvirt import dhcp, ra
from vzlibvirt.config import load_config
from vzlibvirt.dnsmasq import Supervisor, render_config
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError
from vzlibvirt.service import exec_command, run_foreground

UNIT = """[Unit]
Description=vzlibvirt DHCP for routed VMs (supervised dnsmasq)
After=network-pre.target
Before=libvirtd.service

[Service]
Type=simple
ExecStart={exe} dhcp
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vzlibvirt dhcp",
        description="Run and supervise the dnsmasq that answers routed VMs' DHCP "
                    "(in the foreground; for hosts without `vzlibvirt agent`).")
    parser.add_argument("--print-config", action="store_true",
                        help="print the dnsmasq config this host would use and exit")
    parser.add_argument("--print-unit", action="store_true",
                        help="print a systemd unit for this installation and exit")
    args = parser.parse_args(argv)
    if args.print_unit:
        print(UNIT.format(exe=exec_command()), end="")
        return EXIT_OK
    if args.print_config:
        try:
            config = load_config()
        except VzError as exc:
            print(exc.line(), file=sys.stderr)
            return EXIT_REFUSED
        print(render_config(config, dhcp.dhcp_dir(config.state.dir)), end="")
        return EXIT_OK

    def start():
        config = load_config()
        if not config.dhcp.enable:
            raise VzError("DHCP is not enabled: set [dhcp] enable = true in the config")
        sup = Supervisor(config)
        sup.acquire()

        def serve() -> None:
            adverts = ra.start_in_thread(sup.store, str(config.routed.gateway6))
            try:
                sup.run()
            finally:
                if adverts is not None:
                    adverts.stop()
                sup.close()
        return serve, sup.stop

    return run_foreground("vzlibvirt-dhcp", start)
