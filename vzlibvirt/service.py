"""What the long-running commands (`vzlibvirt agent`, `vzlibvirt dhcp`) share: the
command line a systemd unit runs, and a foreground run that stops on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from vzlibvirt.errors import EXIT_OK, EXIT_REFUSED, VzError


def exec_command() -> str:
    """How a unit starts this installation: its console script, else `python -m`."""
    exe = Path(sys.executable).with_name("vzlibvirt")
    return str(exe) if exe.exists() else f"{sys.executable} -m vzlibvirt"


def run_foreground(prog: str, start: Callable[[], tuple[Callable[[], None],
                                                     Callable[..., None]]]) -> int:
    """Log as `prog`; `start()` prepares the service (a refusal is one line on stderr)
    and returns (serve, stop); serve runs until a signal calls stop."""
    logging.basicConfig(level=logging.INFO, format=f"{prog}: %(message)s")
    try:
        serve, stop = start()
    except VzError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_REFUSED
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve()
    return EXIT_OK
