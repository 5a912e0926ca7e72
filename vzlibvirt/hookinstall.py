"""`vzlibvirt install-hooks` / `uninstall-hooks`: place (remove) the thin /bin/sh shims
that libvirt runs from `HOOKS_DIR/{qemu,lxc,network}.d/`.

The shim bakes in this installation's interpreter (sys.executable), so the hook works
whatever libvirt's minimal PATH holds, and filters operations in shell so that calls with
nothing to do never start Python (the hook cost budget in the contract). Everything it
knows (which operations reach Python, which are filters, where a domain's record is) is
rendered in from contract.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vzlibvirt import contract
from vzlibvirt.config import load_config
from vzlibvirt.fsutil import atomic_write

DEFAULT_HOOKS_DIR = Path("/etc/libvirt/hooks")
RT_PROTOS_DIR = "/etc/iproute2/rt_protos.d"  # iproute2 reads route protocol names here
SHIM_NAME = "50-vzlibvirt"
MARKER = "# vzlibvirt-hook-shim"
# run by path with `python -S -E`: the client imports only builtin modules and contract
CLIENT = Path(__file__).with_name("hookclient.py")
# the same client in Perl builtins, which starts four times faster (docs/performance.md)
PERL_CLIENT = Path(__file__).with_name("data") / "hookclient.pl"
# the template's `@{domain` ... `@}` sections: kept for qemu/lxc, dropped for network
_DOMAIN_SECTION = re.compile(r"^@\{domain\n(.*?)^@\}\n", re.M | re.S)
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


@dataclass(frozen=True)
class Change:
    """What happened to one driver's shim."""

    driver: str
    path: Path
    action: str  # "created" | "updated" | "unchanged" | "removed" | "absent"
    first_hook: bool = False  # the driver had no hook script before: restart libvirtd


def render(driver: str, python: str, config: str | None, agent_socket: str | None = None,
           state_dir: str | None = None) -> str:
    """The shim text for DRIVER; every substituted value is shell-quoted.

    The state dir is baked in for the stop check; the hook refuses to start guests when
    it no longer matches the config (install-hooks must run again after a change)."""
    template = resources.files("vzlibvirt.hooks").joinpath("shim.sh.in").read_text()
    state_dir = state_dir or str(load_config(Path(config) if config else None).state.dir)
    env = ""
    for var, value in ((contract.CONFIG_ENV, config), (contract.AGENT_SOCKET_ENV, agent_socket),
                       (contract.STATE_DIR_ENV, state_dir)):
        if value is not None:
            env += f"{var}={shlex.quote(value)}\nexport {var}\n"
    domain = driver in contract.DOMAIN_DRIVERS
    template = _DOMAIN_SECTION.sub(lambda m: m.group(1) if domain else "", template)
    values = {
        "DRIVER": driver,
        "ENV": env,
        # the agent-reconciled ones have a branch of their own, before this one
        "OPS": "|".join(op for op in contract.PYTHON_OPS[driver]
                        if op not in contract.AGENT_RECONCILED_OPS),
        "FILTER_OPS": "|".join(op for op in contract.FILTER_OPS
                               if op not in contract.PYTHON_OPS[driver]),
        "STOP_OPS": "|".join(contract.STOP_OPS),
        "RECONCILED_OPS": "|".join(contract.AGENT_RECONCILED_OPS),
        "FOLLOWING": shlex.quote(str(contract.following_path(Path(state_dir), driver))),
        "GATED": "".join(f"    {op}) [ -e {shlex.quote(path)} ] || exit 0 ;;\n"
                         for op, path in contract.GATED_OPS.get(driver, {}).items()),
        **_record_path_parts(Path(state_dir), driver),
        "UUID_ENV": contract.DOMAIN_UUID_ENV,
        "PYTHON": shlex.quote(python),
        "CLIENT": shlex.quote(str(CLIENT)),
        "PLCLIENT": shlex.quote(str(PERL_CLIENT)),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _record_path_parts(state_dir: Path, driver: str) -> dict[str, str]:
    """contract.record_path around the UUID, shell-quoted: the shim puts its $uuid between."""
    mark = "\0"  # cannot occur in a path
    path = str(contract.record_path(state_dir, contract.state_key(driver, mark)))
    head, tail = path.split(mark)
    return {"RECORD_HEAD": shlex.quote(head), "RECORD_TAIL": shlex.quote(tail)}


def is_ours(path: Path) -> bool:
    """Only files carrying our marker line are ever rewritten or removed."""
    try:
        with path.open("r", errors="replace") as fh:
            return any(line.startswith(MARKER) for _, line in zip(range(5), fh, strict=False))
    except OSError:
        return False


def _has_hooks(hooks_dir: Path, driver: str) -> bool:
    """Whether libvirt already runs some hook for DRIVER (then no restart is needed)."""
    main = hooks_dir / driver
    ddir = hooks_dir / f"{driver}.d"
    if main.is_file() and os.access(main, os.X_OK):
        return True
    return ddir.is_dir() and any(
        p.is_file() and os.access(p, os.X_OK) for p in ddir.iterdir()
    )


def install(hooks_dir: Path, python: str, config: str | None,
            agent_socket: str | None = None, state_dir: str | None = None) -> list[Change]:
    """Create or refresh the three shims; a foreign file at our path is an error."""
    changes = []
    for driver in contract.DRIVERS:
        ddir = hooks_dir / f"{driver}.d"
        path = ddir / SHIM_NAME
        text = render(driver, python, config, agent_socket, state_dir)
        if path.exists() and not is_ours(path):
            raise FileExistsError(f"{path} exists and was not written by vzlibvirt")
        first = not _has_hooks(hooks_dir, driver)
        ddir.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text() == text and os.access(path, os.X_OK):
            changes.append(Change(driver, path, "unchanged"))
            continue
        action = "updated" if path.exists() else "created"
        atomic_write(path, text.encode(), 0o755)
        changes.append(Change(driver, path, action, first_hook=first))
    return changes


def uninstall(hooks_dir: Path) -> list[Change]:
    """Remove our shims only; other hook files and the directories stay."""
    changes = []
    for driver in contract.DRIVERS:
        path = hooks_dir / f"{driver}.d" / SHIM_NAME
        if path.exists() and is_ours(path):
            path.unlink()
            changes.append(Change(driver, path, "removed"))
        else:
            changes.append(Change(driver, path, "absent"))
    return changes


def install_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vzlibvirt install-hooks",
        description="Install the vzlibvirt hook shims for the qemu, lxc and network drivers.",
    )
    parser.add_argument("--hooks-dir", type=Path, default=DEFAULT_HOOKS_DIR)
    parser.add_argument("--config", help="host config path baked into the shims "
                        "as VZLIBVIRT_CONFIG")
    args = parser.parse_args(argv)
    config = str(Path(args.config).absolute()) if args.config else None
    try:
        cfg = load_config(Path(config) if config else None)
        socket_path = str(cfg.agent.socket)
        changes = install(args.hooks_dir, sys.executable, config, socket_path,
                          str(cfg.state.dir))
    except OSError as exc:
        print(f"vzlibvirt install-hooks: {exc}", file=sys.stderr)
        return 1
    for ch in changes:
        print(f"{ch.action}: {ch.path}")
    restart = [ch.driver for ch in changes if ch.first_hook]
    if restart:
        print(
            "libvirtd must be restarted before it runs the new hook(s) for: "
            + ", ".join(restart)
            + " (libvirt looks for hook scripts only when it starts)"
        )
    print(f"for fast hooks run the agent (`vzlibvirt agent`, socket {socket_path}); "
          "`vzlibvirt agent --print-unit` prints a systemd unit for it")
    print(rt_protos_hint())
    return 0


def rt_protos_hint() -> str:
    """How to give our route protocol a name, so `ip route` shows it (docs/routed.md)."""
    number, name = contract.ROUTE_PROTOCOL, contract.ROUTE_PROTOCOL_NAME
    return (f"guest routes carry route protocol {number} (`ip route show proto {number}`); "
            f"to see it named, put the line '{number} {name}' into "
            f"{RT_PROTOS_DIR}/{name}.conf")


def uninstall_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vzlibvirt uninstall-hooks",
        description="Remove the vzlibvirt hook shims (and nothing else).",
    )
    parser.add_argument("--hooks-dir", type=Path, default=DEFAULT_HOOKS_DIR)
    args = parser.parse_args(argv)
    try:
        changes = uninstall(args.hooks_dir)
    except OSError as exc:
        print(f"vzlibvirt uninstall-hooks: {exc}", file=sys.stderr)
        return 1
    for ch in changes:
        if ch.action == "removed":
            print(f"removed: {ch.path}")
    return 0
