"""Fixtures for the contract tests: one embedded chain per session, reset after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_kit import Chain, deploy


@pytest.fixture(scope="session")
def deployed() -> Chain:
    return deploy()


@pytest.fixture
def chain(deployed: Chain) -> Iterator[Chain]:
    """The deployed chain; every test starts from the same state (snapshot, then revert)."""
    snapshot = deployed.tester.take_snapshot()
    yield deployed
    deployed.tester.revert_to_snapshot(snapshot)
