"""Unit-test fixtures: the real `vzlibvirt` command in a subprocess, with a private config.

No root and no kernel changes: `prepare`, `migrate`/`restore`, `plan` and every refusal
apply nothing, so these run anywhere. Each run gets a config whose state dir lives in the
test's tmp dir, so "nothing was applied" is checked by that dir staying empty.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import VzEnv

REPO = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^vzlibvirt: [^\n]+\n\Z")


def oneline(text: str) -> str:
    """How an error line shows a value: whitespace and control characters collapsed."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@dataclass
class Result:
    args: tuple[str, ...]
    rc: int
    stdout: bytes
    stderr: str

    def describe(self) -> str:
        return f"{self.args}: rc={self.rc} stdout={self.stdout[:200]!r} stderr={self.stderr!r}"

    def assert_refused(self, reason: str | None = None, *, domain: str | None = None,
                       mac: str | None = None) -> str:
        """Exit 1, nothing on stdout, exactly one `vzlibvirt:` line on stderr naming the
        domain, the interface and the reason (each when given). Returns the line."""
        assert self.rc == 1, self.describe()
        assert self.stdout == b"", self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        assert ERROR_LINE.match(self.stderr), self.describe()
        line = self.stderr[:-1]
        assert line.isprintable(), self.describe()
        if domain is not None:
            assert line.startswith(f"vzlibvirt: domain '{oneline(domain)[:200]}'"), self.describe()
        if mac is not None:
            assert f" interface {mac}: " in line, self.describe()
        if reason is not None:
            assert reason in line, self.describe()
        return line


@dataclass
class Cli(VzEnv):
    """Runs `python -m vzlibvirt ...` as libvirt's hook shim would, against a private config
    (the config and state layout are VzEnv's; calls run in this namespace, no root)."""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VZLIBVIRT_", "PYTHON"))}
        env.update(VZLIBVIRT_CONFIG=str(self.config), PYTHONPATH=str(REPO))
        env.update(extra)
        return env

    def cmd(self, *args: str, python_opts: tuple[str, ...] = ()) -> list[str]:
        return [sys.executable, *python_opts, "-m", "vzlibvirt", *args]

    def run(self, *args: str, stdin: bytes = b"", timeout: float = 30,
            python_opts: tuple[str, ...] = (), prefix: tuple[str, ...] = (),
            cwd: Path | None = None, **env: str) -> Result:
        p = subprocess.run([*prefix, *self.cmd(*args, python_opts=python_opts)], input=stdin,
                           capture_output=True, env=self.env(**env), timeout=timeout,
                           cwd=cwd or self.root)
        return Result(tuple(args), p.returncode, p.stdout,
                      p.stderr.decode("utf-8", errors="replace"))

    def hook(self, driver: str, name: str, op: str, xml: bytes, subop: str = "begin",
             **kw) -> Result:
        return self.run("hook", driver, name, op, subop, "-", stdin=xml, **kw)

    def plan(self, *args: str, stdin: bytes = b"", **kw) -> Result:
        return self.run("plan", *args, stdin=stdin, **kw)

    def run_many(self, calls: list[tuple[tuple[str, ...], bytes]],
                 workers: int = 4) -> list[Result]:
        """Run (argv, stdin) pairs in parallel processes; results in the same order."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c: self.run(*c[0], stdin=c[1]), calls))

    def applied(self) -> list[Path]:
        """Everything under the state dir: must stay empty on every no-apply path."""
        return sorted(self.state.rglob("*")) if self.state.exists() else []


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    c.write_config()
    return c
