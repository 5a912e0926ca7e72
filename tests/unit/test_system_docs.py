"""The docs the system tests run (tests/system): the README's real-host section and the
user guide's upgrade and uninstall sections must keep their shell blocks, in the shape
vzlibvirt/lab/system_install.py reads them. No root, no VM: the VM run is tests/system."""

from __future__ import annotations

from pathlib import Path

from vzlibvirt.lab.system_install import shell_blocks

REPO = Path(__file__).resolve().parents[2]


def test_readme_real_host_section():
    build, host = shell_blocks(REPO / "README.md", "Use it on a real host")
    assert build.startswith("pip wheel --wheel-dir wheels .")
    for step in ("--find-links /root/wheels vzlibvirt", "vzlibvirt install-hooks",
                 "vzlibvirt agent --print-unit > /etc/systemd/system/vzlibvirt-agent.service",
                 "systemctl enable --now vzlibvirt-agent", "systemctl restart libvirtd"):
        assert step in host, step


def test_user_guide_upgrade_and_uninstall():
    (upgrade,) = shell_blocks(REPO / "docs" / "user-guide.md", "8. Upgrade")
    assert "--upgrade vzlibvirt" in upgrade and "vzlibvirt install-hooks" in upgrade
    (uninstall,) = shell_blocks(REPO / "docs" / "user-guide.md", "9. Uninstall")
    for step in ("systemctl disable --now vzlibvirt-agent", "vzlibvirt uninstall-hooks",
                 "rm -rf /run/vzlibvirt"):
        assert step in uninstall, step
