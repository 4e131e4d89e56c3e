"""The payment journal: one atomic claim per (payer, nonce), a strict state table, durable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from mesh_x402.store import journal as journal_module
from mesh_x402.store.journal import (
    TRANSITIONS,
    ClaimOutcome,
    InvalidTransitionError,
    Journal,
    NewPayment,
    PaymentState,
)

PAYER = "0x" + "aa" * 20


def make_new_payment(n: int = 0, **overrides: object) -> NewPayment:
    base = NewPayment(
        receipt_id=f"r{n}",
        request_id=f"q{n}",
        payer=PAYER,
        nonce="0x" + f"{n:064x}",
        value=100,
        valid_after=0,
        valid_before=2_000_000_000,
        signature="0x" + "11" * 65,
        network="eip155:31337",
        asset="0x" + "bb" * 20,
        pay_to="0x" + "cc" * 20,
        model="m",
        x402_version=2,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    opened = Journal.in_state_dir(tmp_path, clock=lambda: 1000.0)
    yield opened  # type: ignore[misc]
    opened.close()


class TestClaim:
    def test_claim_then_replay(self, journal: Journal) -> None:
        """The first claim of a (payer, nonce) is accepted, any later one is a replay."""
        assert journal.claim(make_new_payment(), spendable=None) is ClaimOutcome.ACCEPTED
        again = make_new_payment(receipt_id="other", request_id="x")
        assert journal.claim(again, spendable=None) is ClaimOutcome.REPLAYED
        assert journal.claim(
            replace(again, payer=PAYER.upper().replace("0X", "0x")), spendable=None
        ) is (ClaimOutcome.REPLAYED)
        assert journal.count(PaymentState.ACCEPTED) == 1

    def test_exposure_limits_claims(self, journal: Journal) -> None:
        """Open payments count against the balance; released ones do not."""
        assert journal.claim(make_new_payment(1), spendable=250) is ClaimOutcome.ACCEPTED
        assert journal.claim(make_new_payment(2), spendable=250) is ClaimOutcome.ACCEPTED
        assert journal.unsettled_exposure(PAYER) == 200
        assert journal.claim(make_new_payment(3), spendable=250) is ClaimOutcome.INSUFFICIENT
        journal.mark_released("r1", reason="upstream_error")
        assert journal.unsettled_exposure(PAYER) == 100
        assert journal.claim(make_new_payment(3), spendable=250) is ClaimOutcome.ACCEPTED
        assert journal.find(PAYER, "0x" + f"{3:064x}") is not None

    def test_exposure_follows_every_transition(self, journal: Journal) -> None:
        """The payer's exposure (kept by triggers, read by each claim) always equals the
        sum of its open payments, through every transition, per payer."""
        other = "0x" + "dd" * 20

        def summed(payer: str) -> int:
            with journal.connection() as db:
                row = db.execute(
                    "SELECT COALESCE(SUM(value), 0) FROM payments "
                    "WHERE payer = ? AND state IN ('accepted', 'chargeable')",
                    (payer,),
                ).fetchone()
            return int(row[0])

        def check() -> None:
            for payer in (PAYER, other):
                assert journal.unsettled_exposure(payer) == summed(payer)

        for n, value in enumerate((100, 250, 40, 7)):
            journal.claim(make_new_payment(n, value=value), spendable=None)
            check()
        journal.claim(make_new_payment(9, payer=other, value=33), spendable=None)
        journal.claim(make_new_payment(0), spendable=None)  # a replay adds nothing
        check()
        assert journal.unsettled_exposure(PAYER) == 397
        journal.mark_released("r0", reason="upstream_error")
        check()
        journal.mark_chargeable("r1", charge=200, prompt_tokens=1, completion_tokens=1)
        check()
        journal.mark_chargeable("r2", charge=40, prompt_tokens=1, completion_tokens=1)
        journal.mark_chargeable("r3", charge=7, prompt_tokens=1, completion_tokens=1)
        _apply(journal, "r1", PaymentState.SETTLED)
        _apply(journal, "r2", PaymentState.FAILED)
        check()
        assert journal.unsettled_exposure(PAYER) == 7
        assert journal.unsettled_exposure(other) == 33
        assert journal.release_interrupted() == 1  # other's accepted payment
        check()
        assert journal.unsettled_exposure(other) == 0

    def test_payer_value_and_closed_states_are_frozen(self, journal: Journal) -> None:
        """The exposure cannot drift: a payment's payer and value never change, and a
        closed payment never reopens (the database refuses it)."""
        journal.claim(make_new_payment(), spendable=None)
        journal.mark_released("r0", reason="upstream_error")
        with journal.connection() as db:
            for sql in (
                "UPDATE payments SET value = 1 WHERE receipt_id = 'r0'",
                "UPDATE payments SET payer = 'x' WHERE receipt_id = 'r0'",
                "UPDATE payments SET state = 'accepted' WHERE receipt_id = 'r0'",
            ):
                with pytest.raises(sqlite3.IntegrityError):
                    db.execute(sql)
        assert journal.unsettled_exposure(PAYER) == 0

    def test_hundred_concurrent_claims_one_wins(self, tmp_path: Path) -> None:
        """100 threads claiming the same payment: exactly one ACCEPTED."""
        journal = Journal.in_state_dir(tmp_path)
        barrier = threading.Barrier(100)
        outcomes: list[ClaimOutcome] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            barrier.wait()
            outcome = journal.claim(make_new_payment(receipt_id=f"r{i}"), spendable=None)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(ClaimOutcome.ACCEPTED) == 1
        assert outcomes.count(ClaimOutcome.REPLAYED) == 99
        journal.close()

    def test_a_claim_not_yet_synced_is_committed_at_once(self, journal: Journal) -> None:
        """`durable=False` leaves out the fsync, not the commit: another connection
        sees the claim, and a second claim of the nonce is a replay."""
        other = sqlite3.connect(journal.path)
        assert journal.claim(make_new_payment(), spendable=None, durable=False) is (
            ClaimOutcome.ACCEPTED
        )
        assert other.execute("SELECT state FROM payments").fetchall() == [("accepted",)]
        again = make_new_payment(receipt_id="other")
        assert journal.claim(again, spendable=None, durable=False) is ClaimOutcome.REPLAYED
        other.close()

    def test_values_beyond_sqlite_are_refused(self, journal: Journal) -> None:
        """An amount SQLite cannot hold is an error before any write."""
        with pytest.raises(ValueError, match="too large"):
            journal.claim(make_new_payment(value=2**63), spendable=None)


ALL_STATES = list(PaymentState)


def _drive_to(journal: Journal, receipt: str, state: PaymentState) -> None:
    path = {
        PaymentState.ACCEPTED: [],
        PaymentState.CHARGEABLE: [PaymentState.CHARGEABLE],
        PaymentState.RELEASED: [PaymentState.RELEASED],
        PaymentState.SETTLED: [PaymentState.CHARGEABLE, PaymentState.SETTLED],
        PaymentState.FAILED: [PaymentState.CHARGEABLE, PaymentState.FAILED],
    }[state]
    for step in path:
        _apply(journal, receipt, step)


def _apply(journal: Journal, receipt: str, to: PaymentState) -> None:
    if to is PaymentState.CHARGEABLE:
        journal.mark_chargeable(receipt, charge=60, prompt_tokens=3, completion_tokens=4)
    elif to is PaymentState.RELEASED:
        journal.mark_released(receipt, reason="client_disconnected")
    elif to is PaymentState.SETTLED:
        journal.mark_settled(receipt, transaction="0x" + "ee" * 32)
    elif to is PaymentState.FAILED:
        journal.mark_failed(receipt, reason="transaction_failed")


class TestTransitions:
    @pytest.mark.parametrize("source", ALL_STATES)
    @pytest.mark.parametrize("target", [s for s in ALL_STATES if s is not PaymentState.ACCEPTED])
    def test_table(self, journal: Journal, source: PaymentState, target: PaymentState) -> None:
        """Every (from, to) pair is allowed exactly when the transition table says so."""
        journal.claim(make_new_payment(), spendable=None)
        _drive_to(journal, "r0", source)
        if target in TRANSITIONS[source]:
            _apply(journal, "r0", target)
            record = journal.get("r0")
            assert record is not None
            assert record.state is target
        else:
            with pytest.raises(InvalidTransitionError, match="cannot go"):
                _apply(journal, "r0", target)
            record = journal.get("r0")
            assert record is not None
            assert record.state is source

    def test_unknown_receipt(self, journal: Journal) -> None:
        """Moving a payment that does not exist is an error, not a silent no-op."""
        with pytest.raises(InvalidTransitionError, match="no payment"):
            journal.mark_released("missing", reason="x")

    def test_charge_above_value_is_refused_by_the_schema(self, journal: Journal) -> None:
        """The database itself refuses a charge above the authorized value."""
        journal.claim(make_new_payment(), spendable=None)
        with pytest.raises(sqlite3.IntegrityError):
            journal.mark_chargeable("r0", charge=101, prompt_tokens=1, completion_tokens=1)


class TestDurability:
    def test_survives_reopen(self, tmp_path: Path) -> None:
        """Claims and state changes are on disk when the call returns."""
        first = Journal.in_state_dir(tmp_path)
        first.claim(make_new_payment(), spendable=None)
        first.mark_chargeable("r0", charge=42, prompt_tokens=5, completion_tokens=6)
        first.close()
        second = Journal.in_state_dir(tmp_path)
        record = second.get("r0")
        assert record is not None
        assert (record.state, record.charge, record.prompt_tokens) == (
            PaymentState.CHARGEABLE,
            42,
            5,
        )
        assert second.claim(make_new_payment(receipt_id="again"), spendable=None) is (
            ClaimOutcome.REPLAYED
        )
        # Reopening applies nothing twice: the file is at the latest migration.
        assert second.schema_version == len(journal_module._MIGRATIONS)
        second.close()

    def test_exposure_is_built_from_a_journal_written_before_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A journal file from before the exposure table (schema 3) gets each payer's
        open payments summed into it when opened: a claim still sees them."""
        monkeypatch.setattr(journal_module, "_MIGRATIONS", journal_module._MIGRATIONS[:3])
        old = Journal.in_state_dir(tmp_path)
        assert old.schema_version == 3
        other = "0x" + "dd" * 20
        rows = [("r1", PAYER, 100, "accepted"), ("r2", PAYER, 50, "chargeable"),
                ("r3", PAYER, 900, "settled"), ("r4", other, 70, "released")]  # fmt: skip
        with old.transaction() as db:
            for receipt_id, payer, value, state in rows:
                db.execute(
                    "INSERT INTO payments (receipt_id, request_id, payer, nonce, value, "
                    "valid_after, valid_before, signature, network, asset, pay_to, model, "
                    "x402_version, state, created_at, updated_at) "
                    "VALUES (?, 'q', ?, ?, ?, 0, 1, '0x', 'n', 'a', 'p', 'm', 2, ?, 0, 0)",
                    (receipt_id, payer, receipt_id, value, state),
                )
        old.close()
        monkeypatch.undo()
        new = Journal.in_state_dir(tmp_path)
        assert new.schema_version == len(journal_module._MIGRATIONS)
        assert (new.unsettled_exposure(PAYER), new.unsettled_exposure(other)) == (150, 0)
        assert new.claim(make_new_payment(5, value=60), spendable=200) is ClaimOutcome.INSUFFICIENT
        assert new.claim(make_new_payment(5, value=50), spendable=200) is ClaimOutcome.ACCEPTED
        new.close()

    def test_interrupted_payments_released_at_start(self, tmp_path: Path) -> None:
        """A process killed mid-request leaves `accepted` rows; the next start releases
        them (never settled) and leaves every other state alone."""
        first = Journal.in_state_dir(tmp_path)
        first.claim(make_new_payment(1), spendable=None)
        first.claim(make_new_payment(2), spendable=None)
        first.mark_chargeable("r2", charge=10, prompt_tokens=1, completion_tokens=1)
        first.close()
        second = Journal.in_state_dir(tmp_path)
        assert second.release_interrupted() == 1
        r1, r2 = second.get("r1"), second.get("r2")
        assert r1 is not None
        assert r2 is not None
        assert (r1.state, r1.reason) == (PaymentState.RELEASED, "interrupted")
        assert r2.state is PaymentState.CHARGEABLE
        assert second.unsettled_exposure(PAYER) == 100
        assert second.release_interrupted() == 0
        second.close()

    def test_writes_sync_once_each_unless_told_not_to(self, tmp_path: Path) -> None:
        """A durable write syncs after its commit; `durable=False` leaves it to the
        caller; journal writes inside a transaction sync once, with it; a rolled-back
        transaction syncs nothing."""

        class Counting(Journal):
            syncs = 0

            def sync(self) -> None:
                Counting.syncs += 1
                super().sync()

        journal = Counting.in_state_dir(tmp_path)
        opened = Counting.syncs
        steps = [
            (lambda: journal.claim(make_new_payment(1), spendable=None), 1),
            (lambda: journal.claim(make_new_payment(2), spendable=None, durable=False), 0),
            (lambda: journal.mark_chargeable(
                "r2", charge=1, prompt_tokens=1, completion_tokens=1, durable=False), 0),
            (lambda: journal.mark_released("r1", reason="x"), 1),
        ]  # fmt: skip
        for step, syncs in steps:
            before = Counting.syncs
            step()
            assert Counting.syncs - before == syncs
        journal.claim(make_new_payment(3), spendable=None, durable=False)
        journal.claim(make_new_payment(4), spendable=None, durable=False)
        before = Counting.syncs
        with journal.transaction():
            journal.mark_chargeable("r3", charge=1, prompt_tokens=1, completion_tokens=1)
            journal.mark_released("r4", reason="x")
        assert Counting.syncs - before == 1

        def rolled_back() -> None:
            with journal.transaction():
                journal.mark_settled("r3", transaction="0x01")
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            rolled_back()
        assert Counting.syncs - before == 1
        record = journal.get("r3")
        assert record is not None
        assert record.state is PaymentState.CHARGEABLE
        assert opened == 1, "opening syncs the migrations"
        journal.close()

    def test_sync_flushes_the_wal_file(
        self, journal: Journal, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        flushed: list[int] = []
        monkeypatch.setattr(journal_module, "_fdatasync", flushed.append)
        journal.claim(make_new_payment(), spendable=None)
        assert len(flushed) == 1
        wal = Path(f"{journal.path}-wal")
        assert os.fstat(flushed[0]).st_ino == wal.stat().st_ino

    def test_the_wal_is_checkpointed_by_sync(self, journal: Journal) -> None:
        """Autocheckpoints are off on the shared connection, so without `sync`'s own
        checkpoints the database file would never receive a page."""
        assert journal._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size = journal.path.stat().st_size
        for n in range(journal_module._COMMITS_PER_CHECKPOINT + 1):
            journal.claim(make_new_payment(n), spendable=None)
        assert journal.path.stat().st_size > size

    def test_the_wal_stays_bounded_while_commits_never_pause(
        self, journal: Journal, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Checkpoints beside a stream of commits rarely let SQLite start the WAL
        over; past the limit one runs with no commit beside it, so the WAL file
        stays within a few times the limit instead of growing with every commit
        (3,000 claims: about 1.5 to 3.3 MB here with a 256 KiB limit, and 40 to
        75 MB when every checkpoint runs beside the commits)."""
        limit = 256 * 1024
        monkeypatch.setattr(journal_module, "_WAL_LIMIT_BYTES", limit)
        monkeypatch.setattr(journal_module, "_COMMITS_PER_CHECKPOINT", 8)
        journal._db.execute(f"PRAGMA journal_size_limit={limit}")
        done = threading.Event()

        def commit_without_pause() -> None:
            for n in range(3000):
                journal.claim(make_new_payment(n), spendable=None, durable=False)
            done.set()

        writer = threading.Thread(target=commit_without_pause)
        writer.start()
        largest = 0
        while not done.is_set():
            journal.sync()
            largest = max(largest, Path(f"{journal.path}-wal").stat().st_size)
        writer.join()
        assert largest < 40 * limit, f"the WAL grew to {largest} bytes"

    def test_a_claim_not_yet_synced_survives_a_crash_of_the_process(self, tmp_path: Path) -> None:
        """SIGKILL right after a `durable=False` claim: the claim is there on reopen."""
        code = (
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "sys.path.insert(0, sys.argv[2])\n"
            "from test_journal import make_new_payment\n"
            "from mesh_x402.store.journal import Journal\n"
            "journal = Journal.in_state_dir(Path(sys.argv[1]))\n"
            "journal.claim(make_new_payment(7), spendable=None, durable=False)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        child = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)], check=False
        )
        assert child.returncode == -signal.SIGKILL
        reopened = Journal.in_state_dir(tmp_path)
        record = reopened.get("r7")
        assert record is not None
        assert record.state is PaymentState.ACCEPTED
        reopened.close()
