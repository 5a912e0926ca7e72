"""Running the real `vzlibvirt` command as libvirt's hook shim or an administrator would:
this interpreter, a given config, optionally inside a namespace. One runner for the lab
(`bridge create`, the agent), the tests (unit, netns, e2e) and bench."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

# The directory holding this vzlibvirt package: children import the very same code, also
# under `python -S` (no site-packages, so no editable install) and as another user.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# What libvirtd gives a hook (a real init's environment, no PYTHON*, no VZLIBVIRT_*).
LIBVIRT_ENV = {"PATH": "/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C"}
# One guest life as libvirt calls the qemu/lxc hook: (operation, sub-operation).
LIFE = (("prepare", "begin"), ("start", "begin"), ("started", "begin"), ("stopped", "end"),
        ("release", "end"))


def in_netns(ns: str) -> tuple[str, ...]:
    """The command prefix that runs a command in named network namespace NS."""
    return ("ip", "netns", "exec", ns)


@dataclass
class Result:
    """One finished `vzlibvirt` call: stdout as bytes (filters must echo them exactly)."""

    args: tuple[str, ...]
    rc: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    def describe(self) -> str:
        return f"{self.args}: rc={self.rc} stdout={self.stdout[:200]!r} stderr={self.stderr!r}"


@dataclass
class VzCli:
    """`python -m vzlibvirt ...` with CONFIG, run through ENTER (a command prefix such as
    `in_netns(NS)` or an nsenter), in an environment that BASE_ENV starts (None: this
    process's, without VZLIBVIRT_* and PYTHON* variables)."""

    config: Path
    enter: tuple[str, ...] = ()
    base_env: Mapping[str, str] | None = None
    python: str = field(default_factory=lambda: sys.executable)
    cwd: Path | None = None
    result_type: ClassVar[type[Result]] = Result

    def env(self, **extra: str) -> dict[str, str]:
        base = self.base_env if self.base_env is not None else {
            k: v for k, v in os.environ.items() if not k.startswith(("VZLIBVIRT_", "PYTHON"))}
        return {**base, "VZLIBVIRT_CONFIG": str(self.config),
                "PYTHONPATH": str(PACKAGE_ROOT), **extra}

    def argv(self, *args: str, python_opts: Sequence[str] = (), ns: str | None = None,
             prefix: Sequence[str] = ()) -> list[str]:
        enter = in_netns(ns) if ns else self.enter
        return [*prefix, *enter, self.python, *python_opts, "-m", "vzlibvirt", *args]

    def run(self, *args: str, stdin: bytes = b"", timeout: float = 60, ns: str | None = None,
            python_opts: Sequence[str] = (), prefix: Sequence[str] = (),
            cwd: Path | None = None, **env: str) -> Result:
        p = subprocess.run(self.argv(*args, python_opts=python_opts, ns=ns, prefix=prefix),
                           input=stdin, capture_output=True, env=self.env(**env),
                           timeout=timeout, cwd=cwd or self.cwd)
        return self.result_type(tuple(args), p.returncode, p.stdout,
                                p.stderr.decode("utf-8", errors="replace"))

    @staticmethod
    def hook_args(driver: str, name: str, op: str, subop: str | None = None) -> list[str]:
        """A hook call's arguments as libvirt passes them (`stopped`/`release` end, the
        others begin)."""
        return ["hook", driver, name, op, subop or dict(LIFE).get(op, "begin"), "-"]

    def hook(self, driver: str, name: str, op: str, xml: bytes, subop: str | None = None,
             **kw) -> Result:
        return self.run(*self.hook_args(driver, name, op, subop), stdin=xml, **kw)

    def spawn(self, *args: str, log: Path, ns: str | None = None, new_session: bool = False,
              **env: str) -> subprocess.Popen:
        """Start a long-running command (the agent, the DHCP supervisor), stderr to LOG."""
        with log.open("ab") as fh:
            return subprocess.Popen(self.argv(*args, ns=ns), env=self.env(**env),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=fh, cwd=self.cwd, start_new_session=new_session)
