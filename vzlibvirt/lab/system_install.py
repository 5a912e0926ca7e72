"""Installing vzlibvirt into the system VM exactly as the docs tell a user: the shell
blocks are read out of README.md ("Use it on a real host") and docs/user-guide.md
("Upgrade", "Uninstall") of the checkout and run as they stand, so the docs and the
system tests cannot drift apart. The only host-specific value is where the wheels are:
the docs say /root/wheels, and that is where they are copied.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .sh import LabError, progress, run
from .system import SystemVM

WHEELS_IN_VM = "/root/wheels"
CHECKOUT = Path(__file__).resolve().parents[2]


def checkout() -> Path:
    if not (CHECKOUT / "README.md").exists() or not (CHECKOUT / "pyproject.toml").exists():
        raise LabError(f"{CHECKOUT} is not a vzlibvirt checkout (the system VM installs "
                       "from one: use an editable install)")
    return CHECKOUT


def shell_blocks(markdown: Path, heading: str) -> list[str]:
    """The ```sh blocks of the section whose heading line contains HEADING."""
    text = markdown.read_text()
    start = next((m.end() for m in re.finditer(r"^#+ .*$", text, re.M)
                  if heading in m.group(0)), None)
    if start is None:
        raise LabError(f"{markdown.name} has no section {heading!r}")
    nxt = re.search(r"^#+ ", text[start:], re.M)
    section = text[start:start + nxt.start()] if nxt else text[start:]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    if not blocks:
        raise LabError(f"{markdown.name}, section {heading!r}: no ```sh block")
    return blocks


def build_wheels(dest: Path, source: Path | None = None, *, deps: bool = True) -> list[Path]:
    """The README's wheel step on this (the build) machine: vzlibvirt and every
    dependency as wheels, libvirt-python compiled for Debian 12's Python 3.11 (without
    DEPS: vzlibvirt's own wheel only, a new release over wheels already handed in)."""
    src = source or checkout()
    block = shell_blocks(checkout() / "README.md", "Use it on a real host")[0]
    line = next((ln for ln in block.splitlines() if ln.startswith("pip wheel")), None)
    if line is None:
        raise LabError("README: the real-host section lost its `pip wheel` line")
    dest.mkdir(parents=True, exist_ok=True)
    progress(f"wheels of {src} (pip wheel)")
    # `pip wheel --wheel-dir wheels .` with this interpreter's pip, the dirs made absolute
    args = line.split("#", 1)[0].split()[2:]
    args = [str(dest) if a == "wheels" else str(src) if a == "." else a for a in args]
    run([sys.executable, "-m", "pip", "wheel", "-q", *([] if deps else ["--no-deps"]), *args],
        timeout=1200)
    return sorted(dest.glob("*.whl"))


def newer_source(dest: Path, version: str, marker: str) -> Path:
    """A copy of the checkout as a newer release: VERSION, and MARKER as a comment in the
    hook shim template, so an upgrade's new shims can be told from the old."""
    src = checkout()
    files = subprocess.run(["git", "-C", str(src), "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (src / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)
    for rel, pattern in (("pyproject.toml", r'^version = ".*"$'),
                         ("vzlibvirt/__init__.py", r'^__version__ = ".*"$')):
        path = dest / rel
        key = pattern.split(" ")[0].lstrip("^")
        path.write_text(re.sub(pattern, f'{key} = "{version}"', path.read_text(), flags=re.M))
    shim = dest / "hooks" / "shim.sh.in"  # shipped as vzlibvirt.hooks
    lines = shim.read_text().splitlines(keepends=True)
    shim.write_text(lines[0] + f"# {marker}\n" + "".join(lines[1:]))
    return dest


def run_doc_block(vm: SystemVM, markdown: str, heading: str, *, skip: int = 0,
                  timeout: float = 900):
    """Run the ```sh blocks of that docs section in the VM, as written (after the first
    SKIP: the README's first block runs on the build machine)."""
    for block in shell_blocks(checkout() / markdown, heading)[skip:]:
        progress(f"in the system VM: {markdown} / {heading}")
        vm.sh(block, timeout=timeout)


def install(vm: SystemVM, wheels: list[Path] | None = None) -> None:
    """Hand in the wheels and run the README's real-host steps in the VM."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels = wheels or build_wheels(Path(tmp) / "wheels")
        vm.sh(f"rm -rf {WHEELS_IN_VM}")
        vm.copy_in(wheels, WHEELS_IN_VM)
    run_doc_block(vm, "README.md", "Use it on a real host", skip=1)
