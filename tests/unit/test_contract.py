"""contract.py is the one place of the facts the shim, the clients, the hook and the state
share: the Perl client's copies match it, the Python client can import it without site
packages, the build ships the one shim template, and the shim, the model and the state
store agree on where a domain's record is."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

from vzlibvirt import contract, hookinstall
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.lab.domxml import domain_xml, routed
from vzlibvirt.state import DomainRecord, StateStore

REPO = Path(__file__).resolve().parents[2]


def perl_values() -> dict[str, object]:
    """The `my $NAME = ...;` lines of the Perl client's contract block."""
    text = hookinstall.PERL_CLIENT.read_text()
    values: dict[str, object] = {}
    for m in re.finditer(r"^my ([$@])(\w+) = (?:'([^']*)'|(\d+)|qw\(([^)]*)\));$", text, re.M):
        sigil, name, string, number, words = m.groups()
        values[name] = (words.split() if sigil == "@" else
                        int(number) if number is not None else string)
    return values


def test_the_perl_client_carries_the_contracts_values():
    assert perl_values() == {
        "SOCKET_ENV": contract.AGENT_SOCKET_ENV,
        "DEFAULT_SOCKET": contract.DEFAULT_SOCKET,
        "NO_AGENT": contract.NO_AGENT,
        "FORWARDED_ENV": list(contract.FORWARDED_ENV),
        "TIMEOUT": contract.CLIENT_TIMEOUT_S,
    }
    # and spells them nowhere else (the code uses the variables)
    body = hookinstall.PERL_CLIENT.read_text().split("my $TIMEOUT = ")[1].split("\n", 1)[1]
    for value in (contract.AGENT_SOCKET_ENV, contract.DEFAULT_SOCKET,
                  *contract.FORWARDED_ENV, f"'{contract.NO_AGENT}'",
                  str(contract.CLIENT_TIMEOUT_S)):
        assert value not in body, value


def test_contract_imports_nothing_under_python_S_E():
    """The Python client imports it on the hook's hot path: builtins only."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
            "import vzlibvirt.contract; print(' '.join(sorted(set(sys.modules) - before)))")
    p = subprocess.run([sys.executable, "-S", "-E", "-c", code, str(REPO)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["vzlibvirt", "vzlibvirt.contract"]


def test_the_build_ships_every_package_and_the_one_shim_template():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {".".join(p.relative_to(REPO).parts) for p in [REPO / "vzlibvirt",
                *(REPO / "vzlibvirt").rglob("*")] if p.is_dir() and p.name != "__pycache__"}
    assert set(setuptools["packages"]) == packages | {"vzlibvirt.hooks"}
    assert setuptools["package-dir"] == {"vzlibvirt.hooks": "hooks"}
    assert setuptools["package-data"]["vzlibvirt.hooks"] == ["shim.sh.in"]
    shipped = resources.files("vzlibvirt.hooks").joinpath("shim.sh.in")
    assert shipped.read_text() == (REPO / "hooks" / "shim.sh.in").read_text()
    assert sorted(p.name for p in REPO.rglob("shim.sh.in")
                  if ".venv" not in p.parts and "build" not in p.parts) == ["shim.sh.in"]


def test_shim_model_and_state_store_agree_on_the_record(tmp_path):
    """A record the store saves under the parsed domain's key is the one the shim finds."""
    uuid = "0b1f6a2e-1d6c-4a55-9c8d-2f1e7d6c0a01"  # as libvirt writes it: lower case
    xml = domain_xml("ct1", uuid=uuid,
                     interfaces=[routed("52:54:00:aa:00:01", ["198.51.100.7"], native=True)])
    domain = parse_domain(xml)
    assert domain.key == contract.state_key("lxc", uuid)
    state = tmp_path / "state"
    StateStore(state).save(DomainRecord(key=domain.key, name="ct1", uuid=uuid, driver="lxc"))
    assert StateStore(state).domain_keys() == [domain.key]
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "reached $VZLIBVIRT_DOMAIN_UUID"\n')
    python.chmod(0o755)
    shim = tmp_path / "shim"
    shim.write_text(hookinstall.render("lxc", str(python), None, str(tmp_path / "no.sock"),
                                       str(state)))
    for op in contract.STOP_OPS:
        r = subprocess.run(["/bin/sh", str(shim), "ct1", op, "end", "-"], input=xml,
                           capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
        assert (r.returncode, r.stdout) == (0, f"reached {uuid}\n".encode()), r.stderr
