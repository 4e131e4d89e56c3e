"""Receipts, countersignatures, peer identities and nonce reservations.

The tables live in the payment journal's SQLite file (migration 2 of
`store/journal.py`) and are written through the journal's connection, so a
payment turning `chargeable` and its signed receipt commit in ONE transaction:
after a SIGKILL at any instant either both are on disk or neither is.

What is kept, and who writes it:

- `receipts`: every receipt this node signed as the entry node (linked to its
  journal row by `payment_id`) or received from a verified entry node and
  checked (`payment_id` NULL); credits in `receipt_credits`.
- `receipt_acks`: countersignatures. The entry node keeps its participants'
  acks; a participant keeps its own.
- `peer_identities`: identity claims verified on the ERC-8004 registry, with
  an expiry, so a respawned plugin trusts its peers again without waiting.
- `nonce_reservations`: (payer, nonce) pairs a verified peer reserved. The
  journal's claim refuses such a pair in the same statement that inserts it.

Every method is a short synchronous call, durable when it returns (unless
told otherwise, as `Journal` methods); callers on the event loop run them in
a thread (`to_thread`), except the gate's unsynced charge.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mesh_x402.core.receipts import Credit, Receipt
from mesh_x402.store.journal import Journal

__all__ = [
    "Ack",
    "PeerIdentity",
    "ReceiptStore",
    "Reservation",
    "SettleableReceipt",
    "StoredReceipt",
]

_MAX_SQL_INT: Final = 2**63 - 1


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: object) -> bytes:
    return bytes.fromhex(str(text).removeprefix("0x"))


@dataclass(frozen=True)
class SettleableReceipt:
    """A chargeable payment with its signed receipt: everything one `settle` item needs.

    Attributes:
        payment_id: the journal's key for the payment (`PaymentRecord.receipt_id`),
            for `Journal.mark_settled` / `mark_failed`.
        payer, nonce, value, valid_after, valid_before: the EIP-3009
            authorization as journalled (payer lower-case, nonce 0x hex).
        signature: the payer's authorization signature as journalled (0x hex, 65 bytes).
        receipt_hash: the receipt's EIP-712 digest (the item's `receiptHash`).
        entry_agent_id: this node's agentId as named in the receipt.
        credits: (agentId, amount) pairs; they sum to the charge.
        refund: value - charge.
        created_at: when the payment was journalled (unix seconds).
    """

    payment_id: str
    payer: str
    nonce: str
    value: int
    valid_after: int
    valid_before: int
    signature: str
    receipt_hash: bytes
    entry_agent_id: int
    credits: tuple[Credit, ...]
    refund: int
    created_at: float


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt as kept: the receipt, its hash, the entry signature, its local payment."""

    receipt: Receipt
    receipt_hash: bytes
    signature: bytes
    payment_id: str | None
    created_at: float


@dataclass(frozen=True)
class Ack:
    """A countersignature: `agent_id`'s signer signed the receipt's digest."""

    receipt_hash: bytes
    agent_id: int
    signer: str
    signature: bytes
    created_at: float


@dataclass(frozen=True)
class PeerIdentity:
    """An identity claim verified on the registry: `agent_id` is `peer_id`, signing as `signer`."""

    agent_id: int
    peer_id: str
    signer: str
    chain_id: int
    registry: str
    verified_at: float
    expires_at: float


@dataclass(frozen=True)
class Reservation:
    """A verified peer's reservation of (payer, nonce)."""

    payer: str
    nonce: str
    agent_id: int
    reserved_at: float


_RECEIPT_COLUMNS: Final = "receipt_hash, payment_id, body, signature, created_at"


def _stored(row: tuple[object, ...]) -> StoredReceipt:
    receipt_hash, payment_id, body, signature, created = row
    return StoredReceipt(
        receipt=Receipt.from_json(json.loads(str(body))),
        receipt_hash=_unhex(receipt_hash),
        signature=_unhex(signature),
        payment_id=None if payment_id is None else str(payment_id),
        created_at=float(created),  # type: ignore[arg-type]
    )


class ReceiptStore:
    """Receipts and what goes with them, in the journal's file.

    Args:
        journal: the open payment journal (its connection and lock are shared).
        clock: unix time for the created/received columns.
    """

    def __init__(self, journal: Journal, *, clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._clock = clock

    # -- receipts -------------------------------------------------------------

    def _insert_receipt(
        self,
        db: sqlite3.Connection,
        receipt: Receipt,
        receipt_hash: bytes,
        signature: bytes,
        payment_id: str | None,
    ) -> bool:
        for amount in (receipt.value, receipt.entry_agent_id, *(c.amount for c in receipt.credits)):
            if amount > _MAX_SQL_INT:
                raise ValueError(f"receipt figure {amount} is too large for the store")
        inserted = db.execute(
            "INSERT INTO receipts (receipt_hash, payment_id, entry_agent_id, payer, nonce, value, "
            "charge, refund, body, signature, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (receipt_hash) DO NOTHING",
            (
                _hex(receipt_hash),
                payment_id,
                receipt.entry_agent_id,
                receipt.payer.lower(),
                _hex(receipt.nonce),
                receipt.value,
                receipt.charge,
                receipt.refund,
                json.dumps(receipt.to_json(), separators=(",", ":")),
                _hex(signature),
                self._clock(),
            ),
        ).rowcount
        if inserted != 1:
            return False
        db.executemany(
            "INSERT INTO receipt_credits (receipt_hash, agent_id, amount) VALUES (?, ?, ?)",
            [(_hex(receipt_hash), c.agent_id, c.amount) for c in receipt.credits],
        )
        return True

    def charge_with_receipt(
        self,
        payment_id: str,
        *,
        receipt: Receipt,
        receipt_hash: bytes,
        signature: bytes,
        durable: bool = True,
    ) -> None:
        """Mark the payment `chargeable` and keep its signed receipt, in one transaction.

        The charge and token counts recorded on the payment are the receipt's.

        Args:
            durable: sync before returning; False leaves it to `Journal.sync`.

        Raises:
            InvalidTransitionError: the payment is not `accepted` (nothing is written).
        """
        with self._journal.transaction(durable=durable) as db:
            self._journal.mark_chargeable(
                payment_id,
                charge=receipt.charge,
                prompt_tokens=receipt.prompt_tokens,
                completion_tokens=receipt.completion_tokens,
            )
            self._insert_receipt(db, receipt, receipt_hash, signature, payment_id)

    def add_receipt(
        self,
        receipt: Receipt,
        receipt_hash: bytes,
        signature: bytes,
        *,
        own_ack: tuple[int, str, bytes] | None = None,
    ) -> bool:
        """Keep a receipt another node signed (already checked). True when it is new.

        Args:
            own_ack: this node's countersignature (agentId, signer, signature),
                kept in the same transaction: a participant never holds the
                receipt without its ack.
        """
        with self._journal.transaction() as db:
            new = self._insert_receipt(db, receipt, receipt_hash, signature, None)
            if own_ack is not None:
                self._insert_ack(db, receipt_hash, *own_ack)
            return new

    def get(self, receipt_hash: bytes) -> StoredReceipt | None:
        """The receipt with this hash, or None."""
        with self._journal.connection() as db:
            row = db.execute(
                f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE receipt_hash = ?",  # noqa: S608
                (_hex(receipt_hash),),
            ).fetchone()
        return None if row is None else _stored(row)

    def for_payment(self, payment_id: str) -> StoredReceipt | None:
        """The receipt this node signed for one of its journalled payments, or None."""
        with self._journal.connection() as db:
            row = db.execute(
                f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE payment_id = ?",  # noqa: S608
                (payment_id,),
            ).fetchone()
        return None if row is None else _stored(row)

    def receipts(self, *, limit: int = 100, after: float = 0.0) -> list[StoredReceipt]:
        """Receipts kept after `after` (unix seconds), oldest first."""
        with self._journal.connection() as db:
            rows = db.execute(
                f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE created_at > ? "  # noqa: S608
                "ORDER BY created_at, receipt_hash LIMIT ?",
                (after, limit),
            ).fetchall()
        return [_stored(row) for row in rows]

    def settleable(self, limit: int) -> list[SettleableReceipt]:
        """Chargeable payments that have a signed receipt, oldest payment first.

        This is the reconciler's work list: each entry is one `settle` item.
        A payment leaves the list when the journal marks it settled or failed.
        A chargeable payment without a receipt is never listed (nothing
        could justify its split on chain).
        """
        return self._settleable(None, limit)

    def settleable_payment(self, payment_id: str) -> SettleableReceipt | None:
        """The payment `payment_id` as a settle item, if it is chargeable with a
        receipt (settlement mode `immediate` settles exactly this one)."""
        found = self._settleable(payment_id, 1)
        return found[0] if found else None

    def _settleable(self, payment_id: str | None, limit: int) -> list[SettleableReceipt]:
        """Settle items of chargeable payments with a receipt (only `payment_id`'s if given)."""
        with self._journal.connection() as db:
            rows = db.execute(
                "SELECT p.receipt_id, p.payer, p.nonce, p.value, p.valid_after, p.valid_before, "
                "p.signature, r.receipt_hash, r.entry_agent_id, r.refund, p.created_at, "
                "(SELECT json_group_array(json_array(c.agent_id, c.amount)) "
                "   FROM receipt_credits c WHERE c.receipt_hash = r.receipt_hash) "
                "FROM payments p JOIN receipts r ON r.payment_id = p.receipt_id "
                "WHERE p.state = 'chargeable' AND (:id IS NULL OR p.receipt_id = :id) "
                "ORDER BY p.created_at, p.receipt_id LIMIT :limit",
                {"id": payment_id, "limit": limit},
            ).fetchall()
        result = []
        for row in rows:
            (payment_id, payer, nonce, value, after, before, signature, receipt_hash, entry,
             refund, created, credits) = row  # fmt: skip
            result.append(
                SettleableReceipt(
                    payment_id=str(payment_id),
                    payer=str(payer),
                    nonce=str(nonce),
                    value=int(value),
                    valid_after=int(after),
                    valid_before=int(before),
                    signature=str(signature),
                    receipt_hash=_unhex(receipt_hash),
                    entry_agent_id=int(entry),
                    credits=tuple(
                        Credit(agent_id=int(a), amount=int(m))
                        for a, m in sorted(json.loads(str(credits)))
                    ),
                    refund=int(refund),
                    created_at=float(created),
                )
            )
        return result

    # -- acknowledgements -----------------------------------------------------

    def add_ack(self, receipt_hash: bytes, agent_id: int, signer: str, signature: bytes) -> bool:
        """Keep a countersignature (already checked). True when it is new."""
        with self._journal.transaction() as db:
            return self._insert_ack(db, receipt_hash, agent_id, signer, signature)

    def _insert_ack(
        self,
        db: sqlite3.Connection,
        receipt_hash: bytes,
        agent_id: int,
        signer: str,
        signature: bytes,
    ) -> bool:
        if agent_id > _MAX_SQL_INT:
            raise ValueError(f"agentId {agent_id} is too large for the store")
        return (
            db.execute(
                "INSERT INTO receipt_acks (receipt_hash, agent_id, signer, signature, "
                "created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (receipt_hash, agent_id) DO NOTHING",
                (_hex(receipt_hash), agent_id, signer, _hex(signature), self._clock()),
            ).rowcount
            == 1
        )

    def acks(self, receipt_hash: bytes) -> list[Ack]:
        """The countersignatures kept for a receipt, by agentId."""
        with self._journal.connection() as db:
            rows = db.execute(
                "SELECT receipt_hash, agent_id, signer, signature, created_at FROM receipt_acks "
                "WHERE receipt_hash = ? ORDER BY agent_id",
                (_hex(receipt_hash),),
            ).fetchall()
        return [Ack(_unhex(h), int(a), str(s), _unhex(sig), float(c)) for h, a, s, sig, c in rows]

    # -- peer identities ------------------------------------------------------

    def save_identity(self, identity: PeerIdentity) -> None:
        """Keep (or refresh) a verified identity; one row per agentId."""
        with self._journal.transaction() as db:
            db.execute(
                "INSERT INTO peer_identities (agent_id, peer_id, signer, chain_id, registry, "
                "verified_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET peer_id = excluded.peer_id, "
                "signer = excluded.signer, chain_id = excluded.chain_id, "
                "registry = excluded.registry, verified_at = excluded.verified_at, "
                "expires_at = excluded.expires_at",
                (
                    identity.agent_id,
                    identity.peer_id,
                    identity.signer,
                    identity.chain_id,
                    identity.registry,
                    identity.verified_at,
                    identity.expires_at,
                ),
            )

    def forget_identity(self, agent_id: int) -> None:
        """Drop a kept identity (its re-verification failed)."""
        with self._journal.transaction() as db:
            db.execute("DELETE FROM peer_identities WHERE agent_id = ?", (agent_id,))

    def identities(self, *, now: float) -> list[PeerIdentity]:
        """Kept identities that have not expired at `now`."""
        with self._journal.connection() as db:
            rows = db.execute(
                "SELECT agent_id, peer_id, signer, chain_id, registry, verified_at, expires_at "
                "FROM peer_identities WHERE expires_at > ? ORDER BY agent_id",
                (now,),
            ).fetchall()
        return [
            PeerIdentity(int(a), str(p), str(s), int(c), str(r), float(v), float(e))
            for a, p, s, c, r, v, e in rows
        ]

    # -- nonce reservations ---------------------------------------------------

    def reserve(self, payer: str, nonce: str, *, agent_id: int, reserved_at: float) -> bool:
        """Record a verified peer's reservation; the first one for a pair wins. True when new."""
        with self._journal.transaction() as db:
            return (
                db.execute(
                    "INSERT INTO nonce_reservations (payer, nonce, agent_id, reserved_at, "
                    "received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (payer, nonce) DO NOTHING",
                    (payer.lower(), nonce.lower(), agent_id, reserved_at, self._clock()),
                ).rowcount
                == 1
            )

    def reservation(self, payer: str, nonce: str) -> Reservation | None:
        """The reservation of (payer, nonce), or None."""
        with self._journal.connection() as db:
            row = db.execute(
                "SELECT payer, nonce, agent_id, reserved_at FROM nonce_reservations "
                "WHERE payer = ? AND nonce = ?",
                (payer.lower(), nonce.lower()),
            ).fetchone()
        return (
            None
            if row is None
            else Reservation(str(row[0]), str(row[1]), int(row[2]), float(row[3]))
        )
