"""Shared integration fixtures: a real anvil node on 127.0.0.1.

anvil is installed from npm on first use (never skipped: a missing npm or a
failed install fails the test). One node serves the whole session: tests
deploy their own contracts, so they never see each other's state, and
starting anvil once keeps the suite fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_x402.chain.anvil import Anvil
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore
from settlement_kit import Ledger


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A running anvil (chain id 31337, dev accounts funded), stopped after the session."""
    with Anvil() as node:
        yield node


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """Opens a node's journal and receipt store by state folder; all closed after the test.

    A second connection to the file the code under test writes, so a test can
    seed payments or read what was committed there.
    """
    opened: list[Journal] = []

    def open_ledger(state_dir: Path) -> tuple[Journal, ReceiptStore]:
        journal = Journal.in_state_dir(state_dir)
        opened.append(journal)
        return journal, ReceiptStore(journal)

    yield open_ledger
    for journal in opened:
        journal.close()
