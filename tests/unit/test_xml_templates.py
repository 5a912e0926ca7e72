"""Every routed template in xml_templates/ passes `vzlibvirt plan` (what the guide says)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "xml_templates").glob("routed-*.xml"))


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_plans_cleanly(path):
    r = subprocess.run([sys.executable, "-m", "vzlibvirt", "plan", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "routed" in r.stdout
