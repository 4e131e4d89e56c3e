"""Settlement batches: committed before broadcast, resolved atomically, from tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mesh_x402.chain.client import SignedTx
from mesh_x402.store.journal import InvalidTransitionError, Journal, PaymentState
from mesh_x402.store.settlements import (
    BatchEntry,
    BatchState,
    ItemResult,
    SettlementStore,
)
from test_journal import make_new_payment


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.in_state_dir(tmp_path, clock=lambda: 1000.0)
    for n in range(3):
        opened.claim(make_new_payment(n), spendable=None)
        opened.mark_chargeable(f"r{n}", charge=60, prompt_tokens=1, completion_tokens=2)
    yield opened
    opened.close()


def signed(n: int = 0) -> SignedTx:
    return SignedTx(
        sender="0x" + "ab" * 20, nonce=7 + n, tx_hash=f"0x{n:064x}", raw=b"\x02raw" + bytes([n])
    )


def entry(n: int) -> BatchEntry:
    return BatchEntry(f"r{n}", f"0x{n:064x}", "0x" + "aa" * 20, f"0x{n:064x}", 100, 60)


class TestRecord:
    def test_recorded_batch_survives_reopening(self, tmp_path: Path, journal: Journal) -> None:
        """What `record_sent` commits (raw bytes, hash, nonce, items in order) is on disk."""
        batch_id = SettlementStore(journal).record_sent(signed(), [entry(1), entry(0)], now=5.0)
        again = Journal.in_state_dir(tmp_path)
        (batch,) = SettlementStore(again).open_batches()
        assert batch.id == batch_id
        assert batch.state is BatchState.SENT
        assert batch.signed == signed()
        assert [e.payment_id for e in batch.entries] == ["r1", "r0"]
        again.close()

    def test_a_payment_is_in_one_unresolved_batch_at_most(self, journal: Journal) -> None:
        """Recording a payment that is already in flight is refused and writes nothing."""
        store = SettlementStore(journal)
        store.record_sent(signed(0), [entry(0)], now=1.0)
        with pytest.raises(ValueError, match="already in an unresolved batch"):
            store.record_sent(signed(1), [entry(1), entry(0)], now=2.0)
        assert len(store.open_batches()) == 1
        assert store.get(2) is None

    def test_after_resolution_the_payment_may_go_into_a_new_batch(self, journal: Journal) -> None:
        """A failed batch frees its payments (they stayed chargeable)."""
        store = SettlementStore(journal)
        first = store.record_sent(signed(0), [entry(0)], now=1.0)
        store.resolve(
            first, BatchState.FAILED, [ItemResult("r0", None, None, "batch_reverted")], now=2.0
        )
        store.record_sent(signed(1), [entry(0)], now=3.0)
        assert [b.nonce for b in store.open_batches()] == [8]


RESOLUTIONS = [
    # (item results, batch state, expected payment states r0, r1)
    (
        [
            ItemResult("r0", 0, PaymentState.SETTLED, None, "0xt"),
            ItemResult("r1", 1, PaymentState.SETTLED, None, "0xu"),
        ],
        BatchState.CONFIRMED,
        (PaymentState.SETTLED, PaymentState.SETTLED),
    ),
    (
        [
            ItemResult("r0", 0, PaymentState.SETTLED, None, "0xt"),
            ItemResult("r1", 5, PaymentState.FAILED, "authorization_expired", "0xt"),
        ],
        BatchState.CONFIRMED,
        (PaymentState.SETTLED, PaymentState.FAILED),
    ),
    (
        [
            ItemResult("r0", 4, None, "not_entry_signer"),
            ItemResult("r1", 0, PaymentState.SETTLED, None, "0xt"),
        ],
        BatchState.CONFIRMED,
        (PaymentState.CHARGEABLE, PaymentState.SETTLED),
    ),
    (
        [
            ItemResult("r0", None, None, "batch_replaced"),
            ItemResult("r1", None, PaymentState.SETTLED, None, "0xv"),
        ],
        BatchState.FAILED,
        (PaymentState.CHARGEABLE, PaymentState.SETTLED),
    ),
]


@pytest.mark.parametrize(("results", "state", "expected"), RESOLUTIONS)
def test_resolution_moves_batch_and_payments_together(
    journal: Journal,
    results: list[ItemResult],
    state: BatchState,
    expected: tuple[PaymentState, PaymentState],
) -> None:
    """Resolving a batch writes item statuses, payment states and the batch at once."""
    store = SettlementStore(journal)
    batch_id = store.record_sent(signed(), [entry(0), entry(1)], now=1.0)
    store.resolve(batch_id, state, results, now=2.0, block_number=12)
    batch = store.get(batch_id)
    assert batch is not None
    assert (batch.state, batch.block_number) == (state, 12)
    records = [journal.get("r0"), journal.get("r1")]
    assert tuple(r.state for r in records if r is not None) == expected
    for record, result in zip(records, results, strict=True):
        assert record is not None
        if result.state is PaymentState.SETTLED:
            assert record.transaction == result.transaction
        if result.state is PaymentState.FAILED:
            assert record.reason == result.reason


def test_resolution_is_all_or_nothing(journal: Journal) -> None:
    """A result for an unknown payment aborts the whole resolution: the batch stays sent."""
    store = SettlementStore(journal)
    batch_id = store.record_sent(signed(), [entry(0)], now=1.0)
    results = [
        ItemResult("r0", 0, PaymentState.SETTLED, None, "0xt"),
        ItemResult("nope", 0, PaymentState.SETTLED, None, "0xt"),
    ]
    with pytest.raises(InvalidTransitionError):
        store.resolve(batch_id, BatchState.CONFIRMED, results, now=2.0)
    assert journal.get("r0").state is PaymentState.CHARGEABLE  # type: ignore[union-attr]
    assert [b.id for b in store.open_batches()] == [batch_id]


def test_resolving_twice_is_refused_and_settled_payments_stay(journal: Journal) -> None:
    """A resolved batch is final; its payments' states are never rewritten."""
    store = SettlementStore(journal)
    batch_id = store.record_sent(signed(), [entry(0)], now=1.0)
    done = [ItemResult("r0", 0, PaymentState.SETTLED, None, "0xt")]
    store.resolve(batch_id, BatchState.CONFIRMED, done, now=2.0)
    with pytest.raises(InvalidTransitionError, match="cannot go from confirmed"):
        store.resolve(batch_id, BatchState.FAILED, [replace(done[0], state=None)], now=3.0)
    assert journal.get("r0").transaction == "0xt"  # type: ignore[union-attr]


def test_an_already_settled_payment_is_left_alone(journal: Journal) -> None:
    """Resolving again after a crash (payment already settled) is harmless."""
    store = SettlementStore(journal)
    journal.mark_settled("r0", transaction="0xfirst")
    batch_id = store.record_sent(signed(), [entry(0)], now=1.0)
    store.resolve(
        batch_id,
        BatchState.CONFIRMED,
        [ItemResult("r0", 1, PaymentState.SETTLED, None, "0xt")],
        now=2.0,
    )
    assert journal.get("r0").transaction == "0xfirst"  # type: ignore[union-attr]


def test_summary_counts_payments_and_batches(journal: Journal) -> None:
    """The operator's summary: payments per state, batches per state, the newest batch."""
    store = SettlementStore(journal)
    batch_id = store.record_sent(signed(), [entry(0)], now=1.0)
    store.resolve(
        batch_id,
        BatchState.CONFIRMED,
        [ItemResult("r0", 0, PaymentState.SETTLED, None, "0xt")],
        now=2.0,
    )
    store.record_sent(signed(1), [entry(1)], now=3.0)
    summary = store.summary()
    assert summary.payments == {"settled": 1, "chargeable": 2}
    assert summary.batches == {"confirmed": 1, "sent": 1}
    assert summary.last_batch is not None
    assert summary.last_batch.nonce == 8
