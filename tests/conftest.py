"""Shared fixtures: running the real `vzlibvirt` command as libvirt would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vzlibvirt.contract import domains_dir

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, why: str) -> None:
    """Skip locally when the machine cannot run a test; in CI, fail loudly instead."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI=true and this test cannot run: {why}")
    pytest.skip(why)


@dataclass
class HookResult:
    rc: int
    stdout: bytes
    stderr: str


@dataclass
class VzEnv:
    """A private config + state dir; hook() runs the CLI in a network namespace."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "vzlibvirt.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write_config(self, text: str = "") -> None:
        self.config.write_text(f'[state]\ndir = "{self.state}"\n{text}')

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VZLIBVIRT_")}
        env.update({"VZLIBVIRT_CONFIG": str(self.config), "PYTHONPATH": str(REPO)}, **extra)
        return env

    def run(self, *args: str, ns: str | None = None, xml: bytes = b"",
            timeout: float = 60, **extra_env: str) -> HookResult:
        cmd = [sys.executable, "-m", "vzlibvirt", *args]
        if ns:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        p = subprocess.run(cmd, input=xml, capture_output=True, env=self.env(**extra_env),
                           timeout=timeout)
        return HookResult(p.returncode, p.stdout, p.stderr.decode(errors="replace"))

    def hook(self, driver: str, name: str, op: str, xml: bytes, ns: str | None = None,
             subop: str | None = None, **extra_env: str) -> HookResult:
        subop = subop or ("end" if op in ("stopped", "release") else "begin")
        return self.run("hook", driver, name, op, subop, "-", ns=ns, xml=xml, **extra_env)

    def start(self, driver: str, name: str, xml: bytes, ns: str) -> None:
        """libvirt's start sequence; every step must succeed."""
        for op in ("prepare", "start", "started"):
            r = self.hook(driver, name, op, xml, ns=ns)
            assert r.rc == 0, f"{op}: rc={r.rc} {r.stderr}"

    def stop(self, driver: str, name: str, xml: bytes, ns: str) -> None:
        for op in ("stopped", "release"):
            r = self.hook(driver, name, op, xml, ns=ns)
            assert r.rc == 0, f"{op}: rc={r.rc} {r.stderr}"

    def records(self) -> list[Path]:
        d = domains_dir(self.state)
        return sorted(d.glob("*.json")) if d.is_dir() else []


@pytest.fixture
def vz(tmp_path: Path) -> VzEnv:
    env = VzEnv(tmp_path)
    env.write_config()
    return env
