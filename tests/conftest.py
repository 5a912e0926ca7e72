"""Shared fixtures: the real `vzlibvirt` command run as libvirt would (the lab's runner),
against a private config and state dir, with the assertions every suite shares."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vzlibvirt.contract import domains_dir
from vzlibvirt.lab.runner import Result, VzCli

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ERROR_LINE = re.compile(r"^vzlibvirt: [^\n]+\n\Z")


def require(ok: bool, why: str) -> None:
    """Skip locally when the machine cannot run a test; in CI, fail loudly instead."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI=true and this test cannot run: {why}")
    pytest.skip(why)


def oneline(text: str) -> str:
    """How an error line shows a value: whitespace and control characters collapsed."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class Checked(Result):
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


class Vz(VzCli):
    """A private config + state dir under ROOT; runs `python -m vzlibvirt ...` there (in a
    network namespace with ns=...), as libvirt's hook shim would."""

    result_type = Checked

    def __init__(self, root: Path) -> None:
        super().__init__(config=root / "vzlibvirt.toml", cwd=root)
        self.root = root

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write_config(self, text: str = "") -> None:
        self.config.write_text(f'[state]\ndir = "{self.state}"\n{text}')

    def start(self, driver: str, name: str, xml: bytes, ns: str) -> None:
        """libvirt's start sequence; every step must succeed."""
        for op in ("prepare", "start", "started"):
            r = self.hook(driver, name, op, xml, ns=ns)
            assert r.rc == 0, f"{op}: rc={r.rc} {r.stderr}"

    def stop(self, driver: str, name: str, xml: bytes, ns: str) -> None:
        for op in ("stopped", "release"):
            r = self.hook(driver, name, op, xml, ns=ns)
            assert r.rc == 0, f"{op}: rc={r.rc} {r.stderr}"

    def plan(self, *args: str, stdin: bytes = b"", **kw) -> Result:
        return self.run("plan", *args, stdin=stdin, **kw)

    def run_many(self, calls: list[tuple[tuple[str, ...], bytes]],
                 workers: int = 4) -> list[Result]:
        """Run (argv, stdin) pairs in parallel processes; results in the same order."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c: self.run(*c[0], stdin=c[1]), calls))

    def records(self) -> list[Path]:
        d = domains_dir(self.state)
        return sorted(d.glob("*.json")) if d.is_dir() else []

    def applied(self) -> list[Path]:
        """Everything under the state dir: must stay empty on every no-apply path."""
        return sorted(self.state.rglob("*")) if self.state.exists() else []


@pytest.fixture
def vz(tmp_path: Path) -> Vz:
    env = Vz(tmp_path)
    env.write_config()
    return env
