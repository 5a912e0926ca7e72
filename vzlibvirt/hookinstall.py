"""`vzlibvirt install-hooks` / `uninstall-hooks`: place (remove) the thin /bin/sh shims
that libvirt runs from `HOOKS_DIR/{qemu,lxc,network}.d/`.

The shim bakes in this installation's interpreter (sys.executable), so the hook works
whatever libvirt's minimal PATH holds, and filters operations in shell so that calls with
nothing to do never start Python (the hook cost budget in the contract).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vzlibvirt.config import load_config

DEFAULT_HOOKS_DIR = Path("/etc/libvirt/hooks")
SHIM_NAME = "50-vzlibvirt"
MARKER = "# vzlibvirt-hook-shim"

# Operations that reach Python; every other one exits 0 in the shim. `start` is not
# among them: the engine wires at `started` (docs/wiring-point.md), so `start` has
# nothing to do and skipping it saves one Python start per guest boot. The XML filters
# migrate/restore are answered by `cat` (the XML goes back unchanged).
DOMAIN_OPS = ("prepare", "started", "reconnect")
FILTER_OPS = ("migrate", "restore")
# stopped/release start Python only when a state record exists for the domain: the shell
# reads the <uuid> (libvirt writes it third line) and hands it on, since it consumed stdin
STOP_OPS = ("stopped", "release")
STOP_CASE = """    {ops})
        uuid=
        while IFS= read -r line; do
            case $line in *"<uuid>"*) uuid=${{line#*<uuid>}}; uuid=${{uuid%%</uuid>*}}; break ;;
            esac
        done
        case $uuid in ''|*[!0-9a-fA-F-]*)
            echo "vzlibvirt: domain '$1': no valid <uuid> in the hook's XML" >&2; exit 1 ;;
        esac
        [ -e {domains}/{driver}-"$uuid".json ] || exit 0
        VZLIBVIRT_DOMAIN_UUID=$uuid
        export VZLIBVIRT_DOMAIN_UUID ;;
"""
DRIVER_OPS: dict[str, tuple[str, ...]] = {
    "qemu": DOMAIN_OPS,
    "lxc": DOMAIN_OPS,
    "network": ("start",),
}
# run by path with `python -S -E`: the client imports only builtin modules
CLIENT = Path(__file__).with_name("hookclient.py")
# the same client in Perl builtins, which starts four times faster (docs/performance.md)
PERL_CLIENT = Path(__file__).with_name("data") / "hookclient.pl"


@dataclass(frozen=True)
class Change:
    """What happened to one driver's shim."""

    driver: str
    path: Path
    action: str  # "created" | "updated" | "unchanged" | "removed" | "absent"
    first_hook: bool = False  # the driver had no hook script before: restart libvirtd


def render(driver: str, python: str, config: str | None, agent_socket: str | None = None,
           state_dir: str | None = None, client: str = str(CLIENT)) -> str:
    """The shim text for DRIVER; every substituted value is shell-quoted.

    The state dir is baked in for the stop check; the hook refuses to start guests when
    it no longer matches the config (install-hooks must run again after a change)."""
    template = resources.files("vzlibvirt").joinpath("data/shim.sh.in").read_text()
    state_dir = state_dir or str(load_config(Path(config) if config else None).state.dir)
    env = ""
    for var, value in (("VZLIBVIRT_CONFIG", config), ("VZLIBVIRT_AGENT_SOCKET", agent_socket),
                       ("VZLIBVIRT_STATE_DIR", state_dir)):
        if value is not None:
            env += f"{var}={shlex.quote(value)}\nexport {var}\n"
    filters = stop = ""
    if driver != "network":
        filters = f"    {'|'.join(FILTER_OPS)}) exec cat ;;\n"
        stop = STOP_CASE.format(ops="|".join(STOP_OPS), driver=driver,
                                domains=shlex.quote(str(Path(state_dir) / "domains")))
    return (
        template.replace("@OPS@", "|".join(DRIVER_OPS[driver]))
        .replace("@FILTER@", filters)
        .replace("@STOP@", stop)
        .replace("@ENV@", env)
        .replace("@PYTHON@", shlex.quote(python))
        .replace("@CLIENT@", shlex.quote(client))
        .replace("@PLCLIENT@", shlex.quote(str(PERL_CLIENT)))
        .replace("@DRIVER@", driver)
    )


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


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(hooks_dir: Path, python: str, config: str | None,
            agent_socket: str | None = None, state_dir: str | None = None) -> list[Change]:
    """Create or refresh the three shims; a foreign file at our path is an error."""
    changes = []
    for driver in DRIVER_OPS:
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
        _write_atomic(path, text)
        changes.append(Change(driver, path, action, first_hook=first))
    return changes


def uninstall(hooks_dir: Path) -> list[Change]:
    """Remove our shims only; other hook files and the directories stay."""
    changes = []
    for driver in DRIVER_OPS:
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
    return 0


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
