"""Real-kernel fixtures: a fresh host/LAN namespace pair per test, removed afterwards."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.nettopo import Topology, netns_possible

pytestmark = pytest.mark.netns


@pytest.fixture
def topo():
    ok, why = netns_possible()
    require(ok, why)
    t = Topology()
    try:
        t.up()
        yield t
    finally:
        t.close()
