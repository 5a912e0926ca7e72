"""One launcher for vzlibvirt's resident processes (`agent`, `dhcp`): start one through a
VzCli, wait until it serves (its socket, or its own readiness check), stop it. The lab,
the netns tests, the DHCP helpers and bench all start theirs here."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .runner import VzCli
from .sh import LabError


@dataclass
class Resident:
    proc: subprocess.Popen
    log: Path
    sock: Path | None = None

    @classmethod
    def start(cls, cli: VzCli, command: str = "agent", *, log: Path, sock: Path | None = None,
              ns: str | None = None, timeout: float = 30, new_session: bool = False,
              **env: str) -> Resident:
        """Start `vzlibvirt COMMAND`; with SOCK, return once it exists (the agent serves).
        A process that dies or stays silent is stopped, and its log tail raised."""
        r = cls(cli.spawn(command, log=log, ns=ns, new_session=new_session, **env), log, sock)
        if sock is None:
            return r
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if r.proc.poll() is not None or time.monotonic() > deadline:
                r.stop(signal.SIGKILL)
                tail = log.read_text(errors="replace")[-1500:]
                raise LabError(f"the vzlibvirt {command} did not come up:\n{tail}")
            time.sleep(0.02)
        return r

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal it (when still running) and reap it; killed when it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
