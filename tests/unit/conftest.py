"""Unit-test fixtures: the real `vzlibvirt` command in a subprocess, with a private config.

No root and no kernel changes: `prepare`, `migrate`/`restore`, `plan` and every refusal
apply nothing, so these run anywhere. Each run gets a config whose state dir lives in the
test's tmp dir, so "nothing was applied" is checked by that dir staying empty.
"""

from __future__ import annotations

import pytest

from tests.conftest import Vz


@pytest.fixture
def cli(vz: Vz) -> Vz:
    """The shared runner (tests/conftest.py), called `cli` where no namespace is used."""
    return vz
