"""Fixtures for the contract tests: one embedded chain per session, reset after each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from contract_kit import Chain, compile_mocks, deploy


@pytest.fixture(scope="session")
def deployed() -> Chain:
    return deploy()


@pytest.fixture
def chain(deployed: Chain) -> Iterator[Chain]:
    """The deployed chain; every test starts from the same state (snapshot, then revert)."""
    snapshot = deployed.tester.take_snapshot()
    yield deployed
    deployed.tester.revert_to_snapshot(snapshot)


@pytest.fixture(scope="session")
def mocks() -> dict[str, tuple[list[Any], str]]:
    """Test-double contracts (an ERC-1271 wallet, a reentrant token), compiled once."""
    return compile_mocks()
