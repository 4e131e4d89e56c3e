"""The payment journal: SQLite in WAL mode, its commits made durable by `sync`.

mesh-llm SIGKILLs a plugin that fails a health check, so a payment the gate
accepted must be on disk before the response that depends on it starts.
Two kinds of failure are told apart:

- a crash of this process (SIGKILL): a commit survives it as soon as the
  commit returns, because SQLite has written it to the WAL file (the OS
  holds it);
- a power loss or OS crash: a commit survives it once the WAL file is
  fsynced. `sync()` does that (an fdatasync of the WAL, about 0.3 ms here,
  more on a slow disk), and checkpoints the WAL into the database now and
  then, on a connection of its own.

Every write is durable when it returns (it syncs after its commit, outside
the journal's lock, so no other thread waits on an fsync), except where the
caller passes `durable=False`: then the commit returns at once and the
caller runs `sync()` later, elsewhere. The gate does that for the two writes
on every paid request's path: it writes on its event loop, which must never
wait on the disk and would pay two thread hops per write otherwise (about
0.2 ms each on the development VMs), and hands the `sync()` to its writer
thread (http/paywall.py says what waits for it). Autocheckpoints are off on
the shared connection for the same reason: a checkpoint copies and fsyncs
megabytes, and would run inside whichever commit crossed the threshold.
A write on the event loop still waits for another writer's transaction: the
node's own threads share the gate's journal, lock and connection (serve
hands it to the reconciler), so they hold it for their SQL only; another
process writing the file (a `mesh-x402 reconcile` run beside serve) makes it
wait in SQLite's busy handler for that process's transaction.

Replay safety is one atomic statement: `claim` inserts the payment keyed by
(payer, nonce) with `ON CONFLICT DO NOTHING`, and the same statement checks
that the payer's unsettled exposure plus this payment fits its balance. There
is no check-then-insert window for a concurrent copy of the same payment, or
for two payments that together overdraw the payer, to slip through.

States (one table of allowed transitions, `TRANSITIONS`)::

    accepted --(2xx upstream)--> chargeable --> settled
        |                             |
        +--(no service)--> released   +-----> failed

`released` is final: that authorization is never executed.

The connection is shared by threads under a lock, which no fsync is ever
held under.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mesh_x402.errors import PluginError
from mesh_x402.log import Event, get_logger

__all__ = [
    "FILE_NAME",
    "OPEN_STATES",
    "TRANSITIONS",
    "ClaimOutcome",
    "InvalidTransitionError",
    "Journal",
    "NewPayment",
    "PaymentRecord",
    "PaymentState",
]

_log = get_logger("store")

FILE_NAME: Final = "journal.sqlite3"
# Commits between two checkpoints of the WAL (SQLite checkpoints every 1,000
# pages by default; a paid request's two commits touch about eight).
_COMMITS_PER_CHECKPOINT: Final = 128
# A checkpoint running beside new commits rarely catches up with them, and
# SQLite starts the WAL over only once one has: past this size the next
# checkpoint runs under the journal's lock (a few ms, with no commit beside
# it), and SQLite truncates the WAL back to this size after starting it over.
_WAL_LIMIT_BYTES: Final = 32 * 1024 * 1024
# fdatasync flushes what reading the data back needs (the size included);
# macOS has only fsync.
_fdatasync: Final = getattr(os, "fdatasync", os.fsync)
# SQLite integers are signed 64-bit; amounts above this are refused before any SQL.
_MAX_SQL_INT: Final = 2**63 - 1


class PaymentState(enum.Enum):
    """Where a journalled payment is in its life."""

    ACCEPTED = "accepted"
    CHARGEABLE = "chargeable"
    RELEASED = "released"
    SETTLED = "settled"
    FAILED = "failed"


OPEN_STATES: Final = (PaymentState.ACCEPTED, PaymentState.CHARGEABLE)
"""States whose authorization may still pull the payer's funds."""

TRANSITIONS: Final[dict[PaymentState, frozenset[PaymentState]]] = {
    PaymentState.ACCEPTED: frozenset({PaymentState.CHARGEABLE, PaymentState.RELEASED}),
    PaymentState.CHARGEABLE: frozenset({PaymentState.SETTLED, PaymentState.FAILED}),
    PaymentState.RELEASED: frozenset(),
    PaymentState.SETTLED: frozenset(),
    PaymentState.FAILED: frozenset(),
}


class ClaimOutcome(enum.Enum):
    """The result of claiming a payment's (payer, nonce)."""

    ACCEPTED = "accepted"
    """Newly journalled: this request may be served."""
    REPLAYED = "replayed"
    """The (payer, nonce) was claimed before: refuse."""
    INSUFFICIENT = "insufficient"
    """The payer's open authorizations plus this one exceed its balance: refuse."""
    RESERVED = "reserved"
    """A verified peer reserved this (payer, nonce) first (store/receipts.py): refuse."""


class InvalidTransitionError(PluginError):
    """A state change the transition table does not allow (a bug in the caller)."""


@dataclass(frozen=True)
class NewPayment:
    """An accepted payment as it is journalled; addresses and nonce lower-case hex."""

    receipt_id: str
    request_id: str
    payer: str
    nonce: str
    value: int
    valid_after: int
    valid_before: int
    signature: str
    network: str
    asset: str
    pay_to: str
    model: str
    x402_version: int


@dataclass(frozen=True)
class PaymentRecord:
    """A journalled payment with its current state."""

    receipt_id: str
    request_id: str
    payer: str
    nonce: str
    value: int
    valid_after: int
    valid_before: int
    signature: str
    network: str
    asset: str
    pay_to: str
    model: str
    x402_version: int
    state: PaymentState
    charge: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reason: str | None
    transaction: str | None
    created_at: float
    updated_at: float


_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE payments (
        receipt_id        TEXT PRIMARY KEY,
        request_id        TEXT NOT NULL,
        payer             TEXT NOT NULL,
        nonce             TEXT NOT NULL,
        value             INTEGER NOT NULL CHECK (value >= 0),
        valid_after       INTEGER NOT NULL,
        valid_before      INTEGER NOT NULL,
        signature         TEXT NOT NULL,
        network           TEXT NOT NULL,
        asset             TEXT NOT NULL,
        pay_to            TEXT NOT NULL,
        model             TEXT NOT NULL,
        x402_version      INTEGER NOT NULL,
        state             TEXT NOT NULL CHECK (state IN
                              ('accepted', 'chargeable', 'released', 'settled', 'failed')),
        charge            INTEGER CHECK (charge IS NULL OR (charge >= 0 AND charge <= value)),
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        reason            TEXT,
        tx                TEXT,
        created_at        REAL NOT NULL,
        updated_at        REAL NOT NULL,
        UNIQUE (payer, nonce)
    );
    CREATE INDEX payments_open_by_payer ON payments (payer)
        WHERE state IN ('accepted', 'chargeable');
    CREATE INDEX payments_by_state ON payments (state, created_at);
    """,
    # 2: receipts, countersignatures, peer identities, nonce reservations (store/receipts.py).
    """
    CREATE TABLE receipts (
        receipt_hash   TEXT PRIMARY KEY,
        payment_id     TEXT UNIQUE REFERENCES payments (receipt_id),
        entry_agent_id INTEGER NOT NULL CHECK (entry_agent_id >= 0),
        payer          TEXT NOT NULL,
        nonce          TEXT NOT NULL,
        value          INTEGER NOT NULL CHECK (value >= 0),
        charge         INTEGER NOT NULL CHECK (charge >= 0 AND charge <= value),
        refund         INTEGER NOT NULL CHECK (refund = value - charge),
        body           TEXT NOT NULL,
        signature      TEXT NOT NULL,
        created_at     REAL NOT NULL
    );
    CREATE INDEX receipts_by_created ON receipts (created_at);
    CREATE TABLE receipt_credits (
        receipt_hash TEXT NOT NULL REFERENCES receipts (receipt_hash),
        agent_id     INTEGER NOT NULL CHECK (agent_id >= 0),
        amount       INTEGER NOT NULL CHECK (amount >= 0),
        PRIMARY KEY (receipt_hash, agent_id)
    );
    CREATE INDEX receipt_credits_by_agent ON receipt_credits (agent_id);
    CREATE TABLE receipt_acks (
        receipt_hash TEXT NOT NULL,
        agent_id     INTEGER NOT NULL CHECK (agent_id >= 0),
        signer       TEXT NOT NULL,
        signature    TEXT NOT NULL,
        created_at   REAL NOT NULL,
        PRIMARY KEY (receipt_hash, agent_id)
    );
    CREATE TABLE peer_identities (
        agent_id    INTEGER PRIMARY KEY CHECK (agent_id >= 0),
        peer_id     TEXT NOT NULL,
        signer      TEXT NOT NULL,
        chain_id    INTEGER NOT NULL,
        registry    TEXT NOT NULL,
        verified_at REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE TABLE nonce_reservations (
        payer       TEXT NOT NULL,
        nonce       TEXT NOT NULL,
        agent_id    INTEGER NOT NULL CHECK (agent_id >= 0),
        reserved_at REAL NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (payer, nonce)
    );
    """,
    # 3: settle transactions, committed before they are broadcast (store/settlements.py).
    """
    CREATE TABLE batches (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        sender       TEXT NOT NULL,
        nonce        INTEGER NOT NULL CHECK (nonce >= 0),
        tx_hash      TEXT NOT NULL UNIQUE,
        raw_tx       BLOB NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('sent', 'confirmed', 'failed')),
        reason       TEXT,
        block_number INTEGER,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL
    );
    CREATE INDEX batches_by_state ON batches (state, id);
    CREATE TABLE batch_items (
        batch_id     INTEGER NOT NULL REFERENCES batches (id),
        position     INTEGER NOT NULL CHECK (position >= 0),
        payment_id   TEXT NOT NULL REFERENCES payments (receipt_id),
        receipt_hash TEXT NOT NULL,
        payer        TEXT NOT NULL,
        nonce        TEXT NOT NULL,
        value        INTEGER NOT NULL CHECK (value >= 0),
        charge       INTEGER NOT NULL CHECK (charge >= 0 AND charge <= value),
        status       INTEGER CHECK (status IS NULL OR status BETWEEN 0 AND 6),
        reason       TEXT,
        PRIMARY KEY (batch_id, position)
    );
    CREATE INDEX batch_items_by_payment ON batch_items (payment_id);
    """,
    # 4: each payer's open exposure, kept by triggers, so a claim's balance check reads
    # one row instead of summing every open payment of the payer (which grew with the
    # payments waiting for the next settlement pass, on the request path).
    """
    CREATE TABLE payer_exposure (
        payer      TEXT PRIMARY KEY,
        open_value INTEGER NOT NULL CHECK (typeof(open_value) = 'integer' AND open_value >= 0)
    ) WITHOUT ROWID;
    INSERT INTO payer_exposure (payer, open_value)
        SELECT payer, SUM(value) FROM payments
        WHERE state IN ('accepted', 'chargeable') GROUP BY payer;
    CREATE TRIGGER payments_opened AFTER INSERT ON payments
        WHEN NEW.state IN ('accepted', 'chargeable')
    BEGIN
        INSERT INTO payer_exposure (payer, open_value) VALUES (NEW.payer, NEW.value)
            ON CONFLICT (payer) DO UPDATE SET open_value = open_value + excluded.open_value;
    END;
    CREATE TRIGGER payments_closed AFTER UPDATE OF state ON payments
        WHEN OLD.state IN ('accepted', 'chargeable')
         AND NEW.state NOT IN ('accepted', 'chargeable')
    BEGIN
        UPDATE payer_exposure SET open_value = open_value - OLD.value WHERE payer = OLD.payer;
    END;
    -- Payer, value and a closed state never change (TRANSITIONS): refuse it, so the
    -- exposure cannot drift.
    CREATE TRIGGER payments_frozen BEFORE UPDATE OF payer, value ON payments
        WHEN NEW.payer IS NOT OLD.payer OR NEW.value IS NOT OLD.value
    BEGIN
        SELECT RAISE(ABORT, 'payments: payer and value never change');
    END;
    CREATE TRIGGER payments_reopened BEFORE UPDATE OF state ON payments
        WHEN OLD.state NOT IN ('accepted', 'chargeable')
         AND NEW.state IN ('accepted', 'chargeable')
    BEGIN
        SELECT RAISE(ABORT, 'payments: a closed payment never reopens');
    END;
    """,
    # 5: the open-payments-by-payer index served the exposure sum that migration 4
    # replaced; every claim and every close still paid for keeping it.
    """
    DROP INDEX payments_open_by_payer;
    """,
)

_COLUMNS: Final = (
    "receipt_id, request_id, payer, nonce, value, valid_after, valid_before, signature, "
    "network, asset, pay_to, model, x402_version, state, charge, prompt_tokens, "
    "completion_tokens, reason, tx, created_at, updated_at"
)

# One statement: insert unless (payer, nonce) exists, and only when the payer's
# open exposure plus this value fits the spendable limit (NULL: no limit).
_CLAIM_SQL: Final = """
INSERT INTO payments (receipt_id, request_id, payer, nonce, value, valid_after, valid_before,
                      signature, network, asset, pay_to, model, x402_version, state,
                      created_at, updated_at)
SELECT :receipt_id, :request_id, :payer, :nonce, :value, :valid_after, :valid_before,
       :signature, :network, :asset, :pay_to, :model, :x402_version, 'accepted', :now, :now
WHERE (:spendable IS NULL
   OR COALESCE((SELECT open_value FROM payer_exposure WHERE payer = :payer), 0)
        + :value <= :spendable)
  AND NOT EXISTS (SELECT 1 FROM nonce_reservations WHERE payer = :payer AND nonce = :nonce)
ON CONFLICT (payer, nonce) DO NOTHING
"""


@functools.cache
def _move_statement(to: PaymentState, assignments: str) -> tuple[str, tuple[str, ...]]:
    """The UPDATE that moves a payment to `to` from any state allowed to precede it."""
    sources = tuple(state.value for state, targets in TRANSITIONS.items() if to in targets)
    marks = ", ".join("?" for _ in sources)
    sql = (
        f"UPDATE payments SET state = ?, updated_at = ?{assignments} "  # noqa: S608 - constants only
        f"WHERE receipt_id = ? AND state IN ({marks})"
    )
    return sql, sources


def _record(row: tuple[object, ...]) -> PaymentRecord:
    (
        receipt_id, request_id, payer, nonce, value, valid_after, valid_before, signature,
        network, asset, pay_to, model, version, state, charge, prompt, completion, reason, tx,
        created, updated,
    ) = row  # fmt: skip
    return PaymentRecord(
        receipt_id=str(receipt_id),
        request_id=str(request_id),
        payer=str(payer),
        nonce=str(nonce),
        value=int(value),  # type: ignore[call-overload]
        valid_after=int(valid_after),  # type: ignore[call-overload]
        valid_before=int(valid_before),  # type: ignore[call-overload]
        signature=str(signature),
        network=str(network),
        asset=str(asset),
        pay_to=str(pay_to),
        model=str(model),
        x402_version=int(version),  # type: ignore[call-overload]
        state=PaymentState(state),
        charge=None if charge is None else int(charge),  # type: ignore[call-overload]
        prompt_tokens=None if prompt is None else int(prompt),  # type: ignore[call-overload]
        completion_tokens=None if completion is None else int(completion),  # type: ignore[call-overload]
        reason=None if reason is None else str(reason),
        transaction=None if tx is None else str(tx),
        created_at=float(created),  # type: ignore[arg-type]
        updated_at=float(updated),  # type: ignore[arg-type]
    )


class Journal:
    """The payment journal in `<state_dir>/journal.sqlite3`.

    Every method is a short synchronous call that is durable when it returns
    unless told otherwise (`durable=False`, then `sync()` makes it durable).
    One connection is shared under a lock, so threads may call it freely.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Open (creating if needed) the journal file and bring its schema up to date.

        Args:
            path: the SQLite file, normally `<state_dir>/journal.sqlite3`.
            clock: unix time for the created/updated columns.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        # Re-entrant: a store sharing the file may call journal methods inside `transaction`.
        self._lock = threading.RLock()
        self._in_transaction = False  # read and written under the lock only
        self._commits = 0  # since the last checkpoint
        # Autocommit: each statement is its own transaction. NORMAL: a commit
        # writes the WAL without an fsync; `sync()` adds it (module docstring).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        # The WAL exists while a connection has the file open in WAL mode.
        self._wal_path = f"{path}-wal"
        self._wal_fd = self._open_wal()
        self._sync_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self.sync()  # the migrations

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, clock: Callable[[], float] = time.time) -> Journal:
        """Open the journal file inside a node's state folder."""
        return cls(state_dir / FILE_NAME, clock=clock)

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            row = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()
            current = int(row[0])
            for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                # executescript commits first; wrap each migration so it lands whole or not at all.
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\n"
                    f"INSERT INTO schema_migrations VALUES ({version}, {self._clock()!r});\nCOMMIT;"
                )

    @property
    def schema_version(self) -> int:
        """The highest migration applied to this file."""
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction on the journal's connection.

        For the stores that share this file (store/receipts.py): their rows
        and a payment's state change commit together or not at all. Journal
        methods that change a payment's state may be called inside (they
        commit and sync with it); an exception rolls everything back.

        Args:
            durable: sync after the commit (see the module docstring).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False
            self._db.execute("COMMIT")
            self._commits += 1
        if durable:
            self.sync()

    @contextlib.contextmanager
    def _write(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """The connection for one write statement (its own transaction, or part
        of the caller's `transaction`), synced afterwards when `durable`."""
        with self._lock:
            nested = self._in_transaction
            yield self._db
            if not nested:
                self._commits += 1
        if durable and not nested:
            self.sync()

    def sync(self) -> None:
        """Make every commit so far survive a power loss (fdatasync of the WAL);
        checkpoint the WAL into the database every so many commits.

        Never called under the journal's lock: other threads keep writing
        meanwhile (what they commit during the fdatasync may or may not be
        covered by it).
        """
        with self._sync_lock:
            if os.fstat(self._wal_fd).st_ino != os.stat(self._wal_path).st_ino:
                # Another process's last connection removed the WAL and a new one began.
                os.close(self._wal_fd)
                self._wal_fd = self._open_wal()
            _fdatasync(self._wal_fd)
            if self._commits >= _COMMITS_PER_CHECKPOINT:
                self._commits = 0
                self._checkpoint(locked=os.fstat(self._wal_fd).st_size > _WAL_LIMIT_BYTES)

    def _checkpoint(self, *, locked: bool) -> None:
        """Copy the WAL into the database (on a connection of its own, PASSIVE:
        it never waits for readers or writers); `locked`: under the journal's
        lock, so no commit of this process runs beside it and it completes."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
        try:
            with self._lock if locked else contextlib.nullcontext():
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            # What was committed is durable already (the fdatasync before);
            # a later checkpoint copies it into the database file.
            _log.warning(Event.JOURNAL_CHECKPOINT_FAILED, error=str(exc))

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The journal's connection under its lock, for reads by stores sharing the file."""
        with self._lock:
            yield self._db

    def _open_wal(self) -> int:
        """A descriptor of the WAL file, whose name is made durable in its folder
        (SQLite syncs the folder of a WAL it created only in its own syncs)."""
        fd = os.open(self._wal_path, os.O_RDONLY)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        return fd

    def close(self) -> None:
        """Close the connections (again: nothing); later calls raise."""
        # The order `sync` takes the two locks in: the sync lock first.
        with self._sync_lock, self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            self._db.close()
            if self._wal_fd >= 0:
                os.close(self._wal_fd)
                self._wal_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def claim(
        self, payment: NewPayment, *, spendable: int | None, durable: bool = True
    ) -> ClaimOutcome:
        """Journal a verified payment as `accepted`, atomically, once per (payer, nonce).

        Args:
            payment: the verified payment.
            spendable: the payer's cached balance; the claim fails with
                INSUFFICIENT unless the payer's open payments plus this one fit
                it. None skips the check (no balance known and none required).
            durable: sync before returning. With False the claim is committed
                (another claim of the same nonce is refused from now on, and a
                crash of this process keeps it) but survives a power loss only
                after `sync()`: tell nobody of it before then.

        Returns:
            ACCEPTED when this call journalled it, REPLAYED when the (payer,
            nonce) was claimed before, RESERVED when a verified peer reserved
            it first, INSUFFICIENT when the balance does not cover it.
        """
        if payment.value > _MAX_SQL_INT:
            raise ValueError(f"value {payment.value} is too large for the journal")
        params = {
            "receipt_id": payment.receipt_id,
            "request_id": payment.request_id,
            "payer": payment.payer.lower(),
            "nonce": payment.nonce.lower(),
            "value": payment.value,
            "valid_after": payment.valid_after,
            "valid_before": payment.valid_before,
            "signature": payment.signature,
            "network": payment.network,
            "asset": payment.asset,
            "pay_to": payment.pay_to,
            "model": payment.model,
            "x402_version": payment.x402_version,
            "now": self._clock(),
            "spendable": None if spendable is None else min(spendable, _MAX_SQL_INT),
        }
        # One statement is one transaction: nothing to begin or commit around it.
        with self._write(durable=durable) as db:
            if db.execute(_CLAIM_SQL, params).rowcount == 1:
                return ClaimOutcome.ACCEPTED
            return self._refusal(db, params)

    @staticmethod
    def _refusal(db: sqlite3.Connection, params: dict[str, object]) -> ClaimOutcome:
        """Why the claim inserted nothing. Payments are never deleted, so this
        after-the-fact read cannot race into a wrong answer: if the key exists
        now, the claim was a replay."""
        key = (params["payer"], params["nonce"])
        if db.execute("SELECT 1 FROM payments WHERE payer = ? AND nonce = ?", key).fetchone():
            return ClaimOutcome.REPLAYED
        reserved = db.execute(
            "SELECT 1 FROM nonce_reservations WHERE payer = ? AND nonce = ?", key
        ).fetchone()
        return ClaimOutcome.RESERVED if reserved else ClaimOutcome.INSUFFICIENT

    def _move(
        self,
        receipt_id: str,
        to: PaymentState,
        assignments: str,
        values: tuple[object, ...],
        *,
        durable: bool = True,
    ) -> None:
        sql, sources = _move_statement(to, assignments)
        with self._write(durable=durable) as db:
            changed = db.execute(
                sql, (to.value, self._clock(), *values, receipt_id, *sources)
            ).rowcount
        if changed == 1:
            return
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM payments WHERE receipt_id = ?", (receipt_id,)
            ).fetchone()
        if row is None:
            raise InvalidTransitionError(f"no payment with receipt id {receipt_id!r}")
        raise InvalidTransitionError(
            f"payment {receipt_id!r} cannot go from {row[0]} to {to.value}"
        )

    def mark_chargeable(
        self,
        receipt_id: str,
        *,
        charge: int,
        prompt_tokens: int,
        completion_tokens: int,
        durable: bool = True,
    ) -> None:
        """The upstream served the request: record the usage and the charge it prices to.

        Args:
            durable: sync before returning; False leaves that to `sync()`.
        """
        self._move(
            receipt_id,
            PaymentState.CHARGEABLE,
            ", charge = ?, prompt_tokens = ?, completion_tokens = ?",
            (charge, prompt_tokens, completion_tokens),
            durable=durable,
        )

    def mark_released(self, receipt_id: str, *, reason: str) -> None:
        """Nothing was served: this authorization must never be settled."""
        self._move(receipt_id, PaymentState.RELEASED, ", reason = ?", (reason,))

    def mark_settled(self, receipt_id: str, *, transaction: str) -> None:
        """The settlement transaction landed."""
        self._move(receipt_id, PaymentState.SETTLED, ", tx = ?", (transaction,))

    def mark_failed(self, receipt_id: str, *, reason: str, transaction: str | None = None) -> None:
        """Settlement failed for good (e.g. the payer moved the funds first)."""
        self._move(receipt_id, PaymentState.FAILED, ", reason = ?, tx = ?", (reason, transaction))

    def release_interrupted(self, *, reason: str = "interrupted") -> int:
        """Release every payment still `accepted`; call once at start-up, before serving.

        A payment is `accepted` only while its request is in flight, so at
        start-up such a row was cut off by a crash (mesh-llm SIGKILLs a plugin
        that fails a health check). Whether its answer reached the client is
        unknown, and the usage to price it is lost with the process, so the
        payer is given the benefit of the doubt: released, never settled.

        Returns:
            How many payments were released.
        """
        with self._write(durable=True) as db:
            return int(
                db.execute(
                    "UPDATE payments SET state = 'released', reason = ?, updated_at = ? "
                    "WHERE state = 'accepted'",
                    (reason, self._clock()),
                ).rowcount
            )

    def get(self, receipt_id: str) -> PaymentRecord | None:
        """The payment with this receipt id, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM payments WHERE receipt_id = ?",  # noqa: S608 - constant
                (receipt_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def find(self, payer: str, nonce: str) -> PaymentRecord | None:
        """The payment claimed for (payer, nonce), or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM payments WHERE payer = ? AND nonce = ?",  # noqa: S608
                (payer.lower(), nonce.lower()),
            ).fetchone()
        return None if row is None else _record(row)

    def count(self, state: PaymentState) -> int:
        """How many payments are in a state."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM payments WHERE state = ?", (state.value,)
            ).fetchone()
        return int(row[0])

    def unsettled_exposure(self, payer: str) -> int:
        """Sum of the values of the payer's payments that may still pull its funds."""
        with self._lock:
            row = self._db.execute(
                "SELECT open_value FROM payer_exposure WHERE payer = ?", (payer.lower(),)
            ).fetchone()
        return 0 if row is None else int(row[0])
