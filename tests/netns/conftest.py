"""Real-kernel fixtures: a fresh host/LAN namespace pair per test (the lab's topology
builder, with a throw-away prefix), removed afterwards."""

from __future__ import annotations

import pytest

from tests.conftest import require
from vzlibvirt.lab.topology import Topology, netns_possible

pytestmark = pytest.mark.netns


@pytest.fixture
def topo():
    ok, why = netns_possible()
    require(ok, why)
    t = Topology.throwaway()
    try:
        t.up()
        yield t
    finally:
        t.close()
