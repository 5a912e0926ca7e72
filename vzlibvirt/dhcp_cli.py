"""`vzlibvirt dhcp`: the DHCP supervisor (dnsmasq.py) and the IPv6 router advertiser
(ra.py) in the foreground, for hosts that do not run `vzlibvirt agent`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from vzlibvirt import dhcp, ra
from vzlibvirt.config import load_config
from vzlibvirt.dnsmasq import Supervisor, render_config
from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError

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
        exe = Path(sys.executable).with_name("vzlibvirt")
        print(UNIT.format(exe=exe if exe.exists() else f"{sys.executable} -m vzlibvirt"),
              end="")
        return EXIT_OK
    logging.basicConfig(level=logging.INFO, format="vzlibvirt-dhcp: %(message)s")
    try:
        config = load_config()
        if args.print_config:
            print(render_config(config, dhcp.dhcp_dir(config.state.dir)), end="")
            return EXIT_OK
        if not config.dhcp.enable:
            raise VzError("DHCP is not enabled: set [dhcp] enable = true in the config")
        sup = Supervisor(config)
        sup.acquire()
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    adverts = ra.start_in_thread(sup.store, str(config.routed.gateway6))
    try:
        sup.run()
    finally:
        if adverts is not None:
            adverts.stop()
        sup.close()
    return EXIT_OK
