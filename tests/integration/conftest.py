"""Shared integration fixtures: a real anvil node on 127.0.0.1.

anvil is installed from npm on first use (never skipped: a missing npm or a
failed install fails the test). One node serves the whole session: tests
deploy their own contracts, so they never see each other's state, and
starting anvil once keeps the suite fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mesh_x402.chain.anvil import Anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A running anvil (chain id 31337, dev accounts funded), stopped after the session."""
    with Anvil() as node:
        yield node
