"""The receipt store: receipts with their payment, acks, identities, reservations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mesh_x402.core.receipts import Credit, Receipt, ReceiptDomain, receipt_digest
from mesh_x402.store.journal import (
    ClaimOutcome,
    InvalidTransitionError,
    Journal,
    NewPayment,
    PaymentState,
)
from mesh_x402.store.receipts import PeerIdentity, ReceiptStore
from test_journal import make_new_payment

PAYER = "0x" + "aa" * 20
DOMAIN = ReceiptDomain(31337, "0x" + "cc" * 20)


def make_payment(n: int = 0, **overrides: object) -> NewPayment:
    """A payment as test_journal makes them, with this file's receipt ids and value."""
    return make_new_payment(n, **{"receipt_id": f"p{n}", "value": 1000, **overrides})


def make_receipt(n: int = 0, **overrides: object) -> Receipt:
    base = Receipt(
        payer=PAYER,
        nonce=n.to_bytes(32, "big"),
        value=1000,
        request_id=f"q{n}",
        model="m",
        prompt_tokens=10,
        completion_tokens=20,
        price_version=1,
        timestamp=1_700_000_000,
        charge=600,
        refund=400,
        entry_agent_id=0,
        credits=(Credit(0, 60), Credit(7, 540)),
        policy="vram-proportional",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.in_state_dir(tmp_path, clock=Clock())
    yield opened
    opened.close()


@pytest.fixture
def store(journal: Journal) -> ReceiptStore:
    return ReceiptStore(journal, clock=Clock())


def charge(store: ReceiptStore, journal: Journal, n: int) -> bytes:
    journal.claim(make_payment(n), spendable=None)
    receipt = make_receipt(n)
    digest = receipt_digest(receipt, DOMAIN)
    store.charge_with_receipt(f"p{n}", receipt=receipt, receipt_hash=digest, signature=b"\x01" * 65)
    return digest


class TestChargeWithReceipt:
    def test_payment_and_receipt_commit_together(
        self, store: ReceiptStore, journal: Journal
    ) -> None:
        """The payment turns chargeable with the receipt's figures and the receipt is kept."""
        digest = charge(store, journal, 1)
        record = journal.get("p1")
        assert record is not None
        assert (record.state, record.charge, record.prompt_tokens) == (
            PaymentState.CHARGEABLE,
            600,
            10,
        )
        kept = store.for_payment("p1")
        assert kept is not None
        assert (kept.receipt, kept.receipt_hash) == (make_receipt(1), digest)

    def test_bad_transition_writes_nothing(self, store: ReceiptStore, journal: Journal) -> None:
        """A payment that is not `accepted` gets no receipt: the transaction rolls back whole."""
        journal.claim(make_payment(2), spendable=None)
        journal.mark_released("p2", reason="no_service")
        receipt = make_receipt(2)
        with pytest.raises(InvalidTransitionError):
            store.charge_with_receipt(
                "p2", receipt=receipt, receipt_hash=receipt_digest(receipt, DOMAIN), signature=b""
            )
        assert store.for_payment("p2") is None
        assert store.receipts() == []

    def test_receipt_survives_reopen(self, tmp_path: Path) -> None:
        """Committed receipts are on disk when the call returns."""
        journal = Journal.in_state_dir(tmp_path)
        digest = charge(ReceiptStore(journal), journal, 3)
        journal.close()
        again = Journal.in_state_dir(tmp_path)
        kept = ReceiptStore(again).get(digest)
        assert kept is not None
        assert kept.payment_id == "p3"
        again.close()


class TestSettleable:
    def test_lists_chargeable_with_receipt_oldest_first(
        self, store: ReceiptStore, journal: Journal
    ) -> None:
        """Only chargeable payments with a receipt, in journal order, up to the limit."""
        first = charge(store, journal, 1)
        second = charge(store, journal, 2)
        journal.claim(make_payment(3), spendable=None)  # accepted: not settleable
        journal.claim(make_payment(4), spendable=None)
        journal.mark_chargeable("p4", charge=5, prompt_tokens=1, completion_tokens=1)  # no receipt
        items = store.settleable(10)
        assert [item.receipt_hash for item in items] == [first, second]
        item = items[0]
        assert (item.payment_id, item.payer, item.nonce, item.value) == (
            "p1",
            PAYER,
            "0x" + f"{1:064x}",
            1000,
        )
        assert (item.valid_after, item.valid_before, item.signature) == (
            0,
            2_000_000_000,
            "0x" + "11" * 65,
        )
        assert (item.entry_agent_id, item.refund) == (0, 400)
        assert item.credits == (Credit(0, 60), Credit(7, 540))
        assert [i.payment_id for i in store.settleable(1)] == ["p1"]

    def test_settled_leaves_the_list(self, store: ReceiptStore, journal: Journal) -> None:
        """A payment marked settled is no longer offered to the reconciler."""
        charge(store, journal, 1)
        journal.mark_settled("p1", transaction="0x" + "ee" * 32)
        assert store.settleable(10) == []


class TestAcks:
    def test_ack_kept_once_per_agent(self, store: ReceiptStore, journal: Journal) -> None:
        """A second ack from the same agent for the same receipt changes nothing."""
        digest = charge(store, journal, 1)
        assert store.add_ack(digest, 7, "0x" + "07" * 20, b"\x02" * 65)
        assert not store.add_ack(digest, 7, "0x" + "07" * 20, b"\x03" * 65)
        acks = store.acks(digest)
        assert [(a.agent_id, a.signature) for a in acks] == [(7, b"\x02" * 65)]

    def test_peer_receipt_kept_once(self, store: ReceiptStore) -> None:
        """A receipt from another entry node is kept without a payment, once."""
        receipt = make_receipt(9, entry_agent_id=7, credits=(Credit(7, 600),))
        digest = receipt_digest(receipt, DOMAIN)
        assert store.add_receipt(receipt, digest, b"\x04" * 65)
        assert not store.add_receipt(receipt, digest, b"\x04" * 65)
        kept = store.get(digest)
        assert kept is not None
        assert kept.payment_id is None
        assert store.settleable(10) == []


class TestIdentities:
    def test_saved_until_expiry(self, store: ReceiptStore) -> None:
        """Identities are kept per agentId, refreshed in place, and expire."""
        identity = PeerIdentity(3, "ab" * 32, "0x" + "33" * 20, 31337, "0x" + "dd" * 20, 10, 100)
        store.save_identity(identity)
        store.save_identity(replace(identity, expires_at=200))
        assert store.identities(now=150) == [replace(identity, expires_at=200)]
        assert store.identities(now=250) == []
        store.forget_identity(3)
        assert store.identities(now=0) == []


class TestReservations:
    def test_first_reservation_wins(self, store: ReceiptStore) -> None:
        """The first verified reservation of a pair is kept; later ones are not."""
        nonce = "0x" + "AB" * 32
        assert store.reserve(PAYER.upper().replace("0X", "0x"), nonce, agent_id=4, reserved_at=5)
        assert not store.reserve(PAYER, nonce.lower(), agent_id=9, reserved_at=6)
        kept = store.reservation(PAYER, nonce)
        assert kept is not None
        assert (kept.agent_id, kept.nonce) == (4, nonce.lower())

    def test_claim_refused_after_peer_reservation(
        self, store: ReceiptStore, journal: Journal
    ) -> None:
        """The journal refuses a (payer, nonce) a verified peer reserved first."""
        payment = make_payment(5)
        store.reserve(payment.payer, payment.nonce, agent_id=4, reserved_at=5)
        assert journal.claim(payment, spendable=None) is ClaimOutcome.RESERVED
        assert journal.get("p5") is None
        assert journal.claim(make_payment(6), spendable=None) is ClaimOutcome.ACCEPTED

    def test_reservation_after_claim_does_not_undo_it(
        self, store: ReceiptStore, journal: Journal
    ) -> None:
        """A reservation arriving after this node's claim leaves the claim in place."""
        payment = make_payment(7)
        assert journal.claim(payment, spendable=None) is ClaimOutcome.ACCEPTED
        store.reserve(payment.payer, payment.nonce, agent_id=4, reserved_at=5)
        assert journal.claim(replace(payment, receipt_id="x"), spendable=None) is (
            ClaimOutcome.REPLAYED
        )


def test_tables_refuse_broken_sums(journal: Journal) -> None:
    """The schema itself refuses a receipt whose refund is not value - charge."""
    with pytest.raises(sqlite3.IntegrityError), journal.transaction() as db:
        db.execute(
            "INSERT INTO receipts (receipt_hash, entry_agent_id, payer, nonce, value, charge, "
            "refund, body, signature, created_at) VALUES ('h', 0, 'p', 'n', 10, 4, 5, '', '', 0)"
        )
