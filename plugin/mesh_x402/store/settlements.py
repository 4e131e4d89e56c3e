"""Settlement batches, in the journal's SQLite file, written so a SIGKILL loses nothing.

The order the reconciler follows, and why each step is durable first:

1. sign the settle transaction, then `record_sent` commits the raw signed
   bytes, their hash, the sender's nonce and the payment ids in one
   transaction, synced (`Journal.sync`), *before* anything is broadcast;
2. broadcast; the payments stay `chargeable` meanwhile;
3. once the receipt has its confirmations, `confirm` writes every item's
   status, each payment's new state (settled, failed, or still chargeable
   for a retry) and the batch state in one transaction.

A process killed anywhere in between leaves a batch `sent`. The next run
resolves those first (see `chain/reconciler.py`): the receipt, or the same
raw bytes broadcast again under the same nonce, or, when that nonce went to
another transaction, the contract's `PaymentSettled` logs per item. A payment
is in at most one unresolved batch, so it is never in two transactions at once.

Batch states::

    sent --(mined, status 1)--> confirmed
      |
      +--(reverted, or its nonce went to another transaction)--> failed
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from mesh_x402.chain.client import SignedTx
from mesh_x402.log import Event, get_logger
from mesh_x402.store.journal import InvalidTransitionError, Journal, PaymentState

__all__ = [
    "BATCH_TRANSITIONS",
    "Batch",
    "BatchEntry",
    "BatchState",
    "ItemResult",
    "SettlementStore",
    "SettlementSummary",
]


class BatchState(enum.Enum):
    """Where a settle transaction is."""

    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"


BATCH_TRANSITIONS: Final[dict[BatchState, frozenset[BatchState]]] = {
    BatchState.SENT: frozenset({BatchState.CONFIRMED, BatchState.FAILED}),
    BatchState.CONFIRMED: frozenset(),
    BatchState.FAILED: frozenset(),
}


@dataclass(frozen=True)
class BatchEntry:
    """One payment in a batch, in the order of the transaction's items."""

    payment_id: str
    receipt_hash: str
    payer: str
    nonce: str
    value: int
    charge: int


@dataclass(frozen=True)
class Batch:
    """A recorded settle transaction and its items."""

    id: int
    sender: str
    nonce: int
    tx_hash: str
    raw_tx: bytes
    state: BatchState
    reason: str | None
    block_number: int | None
    created_at: float
    updated_at: float
    entries: tuple[BatchEntry, ...]

    @property
    def signed(self) -> SignedTx:
        """The transaction exactly as it was signed, to broadcast again."""
        return SignedTx(sender=self.sender, nonce=self.nonce, tx_hash=self.tx_hash, raw=self.raw_tx)


@dataclass(frozen=True)
class ItemResult:
    """What became of one payment of a batch.

    Attributes:
        payment_id: the journal's receipt id.
        status: the contract's status code, or None when it is unknown (the
            batch's nonce went to another transaction).
        state: SETTLED or FAILED, or None to leave the payment chargeable.
        reason: recorded with a failure (and on the item for a retry).
        transaction: the transaction that settled it, when settled.
    """

    payment_id: str
    status: int | None
    state: PaymentState | None
    reason: str | None = None
    transaction: str | None = None


@dataclass(frozen=True)
class SettlementSummary:
    """Counts for the operator: payments per state and batches per state."""

    payments: Mapping[str, int]
    batches: Mapping[str, int]
    last_batch: Batch | None


_log = get_logger("store")

_BATCH_COLUMNS: Final = (
    "id, sender, nonce, tx_hash, raw_tx, state, reason, block_number, created_at, updated_at"
)


class SettlementStore:
    """Batches and their items, on the journal's connection (same file, same sync).

    Args:
        journal: the open journal; its migrations created the tables.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def record_sent(self, tx: SignedTx, entries: Sequence[BatchEntry], *, now: float) -> int:
        """Commit a signed batch before it is broadcast; return its id.

        Raises:
            ValueError: a payment is already in an unresolved batch (a bug in
                the caller: it would be sent twice).
        """
        with self._journal.transaction() as db:
            ids = [entry.payment_id for entry in entries]
            marks = ", ".join("?" for _ in ids)
            busy = db.execute(
                "SELECT i.payment_id FROM batch_items i JOIN batches b ON b.id = i.batch_id "  # noqa: S608 - marks only
                f"WHERE b.state = 'sent' AND i.payment_id IN ({marks})",
                ids,
            ).fetchall()
            if busy:
                raise ValueError(f"payments already in an unresolved batch: {sorted(busy)}")
            cursor = db.execute(
                "INSERT INTO batches (sender, nonce, tx_hash, raw_tx, state, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'sent', ?, ?)",
                (tx.sender, tx.nonce, tx.tx_hash, tx.raw, now, now),
            )
            batch_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO batch_items (batch_id, position, payment_id, receipt_hash, payer, "
                "nonce, value, charge) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (batch_id, i, e.payment_id, e.receipt_hash, e.payer, e.nonce, e.value, e.charge)
                    for i, e in enumerate(entries)
                ],
            )
        return batch_id

    def resolve(
        self,
        batch_id: int,
        state: BatchState,
        results: Sequence[ItemResult],
        *,
        now: float,
        reason: str | None = None,
        block_number: int | None = None,
    ) -> None:
        """Close a `sent` batch: item statuses, payment states and the batch, atomically.

        Payments already in the wanted state are left alone, so resolving a
        batch again after a crash (or a payment another path settled) is harmless.

        Raises:
            InvalidTransitionError: the batch is not `sent`, or a payment
                cannot reach the wanted state (e.g. settled on chain but failed here).
        """
        with self._journal.transaction() as db:
            row = db.execute("SELECT state FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None or state not in BATCH_TRANSITIONS[BatchState(row[0])]:
                current = "missing" if row is None else row[0]
                raise InvalidTransitionError(
                    f"batch {batch_id} cannot go from {current} to {state.value}"
                )
            for result in results:
                db.execute(
                    "UPDATE batch_items SET status = ?, reason = ? "
                    "WHERE batch_id = ? AND payment_id = ?",
                    (result.status, result.reason, batch_id, result.payment_id),
                )
                self._finish(result)
            db.execute(
                "UPDATE batches SET state = ?, reason = ?, block_number = ?, updated_at = ? "
                "WHERE id = ?",
                (state.value, reason, block_number, now, batch_id),
            )

    def finish_unbatched(self, results: Sequence[ItemResult]) -> None:
        """Record outcomes known without a transaction (a preview said so), atomically."""
        with self._journal.transaction():
            for result in results:
                self._finish(result)

    def _finish(self, result: ItemResult) -> None:
        if result.state is None:
            return
        current = self._journal.get(result.payment_id)
        if current is not None and current.state is result.state:
            return
        if current is not None and current.state is not PaymentState.CHARGEABLE:
            # The chain is the truth, but a final journal state is never rewritten:
            # leave it, say so loudly, and do not block the batch behind it.
            _log.error(
                Event.SETTLEMENT_CONFLICT,
                payment_id=result.payment_id,
                journal_state=current.state.value,
                chain_state=result.state.value,
                tx=result.transaction,
            )
            return
        if result.state is PaymentState.SETTLED:
            self._journal.mark_settled(result.payment_id, transaction=result.transaction or "")
        else:
            self._journal.mark_failed(
                result.payment_id, reason=result.reason or "failed", transaction=result.transaction
            )

    def open_batches(self) -> list[Batch]:
        """Batches still `sent`, oldest first: resolve these before sending anything new."""
        return self._batches("WHERE state = 'sent' ORDER BY id")

    def get(self, batch_id: int) -> Batch | None:
        found = self._batches("WHERE id = ?", (batch_id,))
        return found[0] if found else None

    def recent(self, limit: int) -> list[Batch]:
        """The newest batches first."""
        return self._batches("ORDER BY id DESC LIMIT ?", (limit,))

    def summary(self) -> SettlementSummary:
        with self._journal.connection() as db:
            payments = dict(db.execute("SELECT state, COUNT(*) FROM payments GROUP BY state"))
            batches = dict(db.execute("SELECT state, COUNT(*) FROM batches GROUP BY state"))
        last = self.recent(1)
        return SettlementSummary(
            payments={str(k): int(v) for k, v in payments.items()},
            batches={str(k): int(v) for k, v in batches.items()},
            last_batch=last[0] if last else None,
        )

    def unsettled_charges(self) -> int:
        """The charges of this node's chargeable payments: money earned, not yet on chain."""
        with self._journal.connection() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(charge), 0) FROM payments WHERE state = 'chargeable'"
            ).fetchone()
        return int(row[0])

    def _batches(self, where: str, params: tuple[object, ...] = ()) -> list[Batch]:
        with self._journal.connection() as db:
            rows = db.execute(f"SELECT {_BATCH_COLUMNS} FROM batches {where}", params).fetchall()  # noqa: S608 - constants
            batches = []
            for row in rows:
                items = db.execute(
                    "SELECT payment_id, receipt_hash, payer, nonce, value, charge "
                    "FROM batch_items WHERE batch_id = ? ORDER BY position",
                    (row[0],),
                ).fetchall()
                batches.append(_batch(row, items))
        return batches


def _batch(row: tuple[object, ...], items: list[tuple[object, ...]]) -> Batch:
    (batch_id, sender, nonce, tx_hash, raw, state, reason, block, created, updated) = row
    return Batch(
        id=int(batch_id),  # type: ignore[call-overload]
        sender=str(sender),
        nonce=int(nonce),  # type: ignore[call-overload]
        tx_hash=str(tx_hash),
        raw_tx=bytes(raw),  # type: ignore[call-overload]
        state=BatchState(state),
        reason=None if reason is None else str(reason),
        block_number=None if block is None else int(block),  # type: ignore[call-overload]
        created_at=float(created),  # type: ignore[arg-type]
        updated_at=float(updated),  # type: ignore[arg-type]
        entries=tuple(
            BatchEntry(
                payment_id=str(p),
                receipt_hash=str(h),
                payer=str(a),
                nonce=str(n),
                value=int(v),  # type: ignore[call-overload]
                charge=int(c),  # type: ignore[call-overload]
            )
            for p, h, a, n, v, c in items
        ),
    )
