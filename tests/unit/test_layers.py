"""The layer rule of docs/design.md, checked on the import graph (lazy imports count): a
module imports only modules of its own layer or a lower one. The table in the doc is the
single statement of the rule; this test reads it, so the two cannot drift apart."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "vzlibvirt"
DESIGN = ROOT / "docs" / "design.md"
ROW = re.compile(r"^\|\s*L(\d+)\s[^|]*\|([^|]+)\|")


def layer_table() -> dict[str, int]:
    """`| L3 state | `state` |` rows of docs/design.md → {module or package: layer}."""
    layers: dict[str, int] = {}
    for line in DESIGN.read_text().splitlines():
        m = ROW.match(line)
        if m:
            for name in re.findall(r"`([\w./]+)`", m.group(2)):
                layers["vzlibvirt." + name.strip("/").replace("/", ".")] = int(m.group(1))
    return layers


def modules() -> dict[str, Path]:
    """{'vzlibvirt.x.y': path} for every module of the package."""
    found = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = p
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports anywhere in its text (lazy ones too)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "vzlibvirt":
                out.add(t)
    return out


def layer_of(name: str, table: dict[str, int]) -> int | None:
    while name:
        if name in table:
            return table[name]
        name = name.rpartition(".")[0]
    return None


def test_every_module_has_a_layer():
    table = layer_table()
    assert table, "docs/design.md has no layer table"
    missing = sorted(m for m in modules() if m != "vzlibvirt" and layer_of(m, table) is None)
    assert missing == [], f"modules without a layer in docs/design.md: {missing}"


def test_no_module_imports_a_higher_layer():
    table = layer_table()
    mods = modules()
    known = set(mods)
    upward = []
    for name, path in mods.items():
        if name == "vzlibvirt":
            continue
        mine = layer_of(name, table)
        for dep in imports_of(name, path, known):
            theirs = layer_of(dep, table)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} (L{mine}) imports {dep} (L{theirs})")
    assert upward == [], "\n".join(upward)


def test_state_and_contract_load_no_mode_module():
    code = (
        "import sys, vzlibvirt.state, vzlibvirt.contract\n"
        "bad = sorted(m for m in sys.modules if m in {BAD})\n"
        "print(','.join(bad))\n"
    )
    bad = {"vzlibvirt.routed", "vzlibvirt.bridged", "vzlibvirt.wiring", "vzlibvirt.modes",
           "vzlibvirt.engine", "vzlibvirt.netlink"}
    out = subprocess.run([sys.executable, "-c", code.replace("{BAD}", repr(bad))],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_the_product_imports_no_pyroute2():
    """pyroute2 is a test dependency only (pyproject.toml): the product speaks netlink
    through rtnl.py, and an install from the README's wheels has no pyroute2."""
    users = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "pyroute2" for n in names):
                users.append(name)
    assert users == []
