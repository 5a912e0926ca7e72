"""`vzlibvirt lab` arguments refused before anything is touched (no root needed)."""

from __future__ import annotations

import pytest

from vzlibvirt.lab.cli import main


@pytest.mark.parametrize("cmd", ["up", "demo"])
def test_bgp_needs_two_hosts(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--bgp"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "vzlibvirt lab: error: --bgp needs --hosts 2"
