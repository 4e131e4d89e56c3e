"""The reconciler: settle chargeable payments on chain in batches, exactly once.

One pass (`Reconciler.run_once`):

1. Resolve every batch a previous pass left `sent` (a SIGKILL, a dead RPC):
   its receipt if mined; else, while the sender's nonce is still unused, the
   SAME signed bytes broadcast again (same nonce, so at most one of them can
   ever be mined); else (the nonce went to another transaction) the
   contract's `PaymentSettled` logs per item (receipt hash, payer and nonce):
   settled items are recorded with their transaction, the others return to
   the pool. Nothing new is sent before this is done, so a payment is never
   in two transactions.
2. Take up to `settlement.batch_size` settleable receipts (oldest first) and
   preview the batch with an `eth_call` of `settle` as this node: items the
   contract would reject are classified (`chain/outcomes.py`) without
   spending gas; the rest are signed into one transaction, which is
   committed to the journal (`store/settlements.py`) before it is broadcast.
3. Wait for `chain.confirmations`, then record every item's outcome and the
   batch in one transaction. Repeat while there is work.
4. Compare this node's on-chain credits (`balanceOf(agentId)` plus what was
   withdrawn, from `Withdrawn` events) with the credits of the settled
   receipts it acknowledged, and report any shortfall.

The chain client is synchronous, so a pass runs in a worker thread and the
event loop never waits on the RPC; an unreachable RPC (`RpcUnavailable`) is
retried with exponential back-off from the loop (`asyncio.sleep`). A file
lock in the state folder keeps `serve`'s loop and a `mesh-x402 reconcile`
command from interleaving their transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from eth_account.signers.local import LocalAccount

from mesh_x402.chain.bindings import (
    Credit,
    SettlementBinding,
    SettlementItem,
    SettleStatus,
    TokenBinding,
)
from mesh_x402.chain.client import ChainClient, EncodedCall, TransactionReverted
from mesh_x402.chain.eip712 import Signature, TransferAuthorization
from mesh_x402.chain.outcomes import AuthorizationFacts, OutcomeKind, classify
from mesh_x402.core.ports import Settlement
from mesh_x402.errors import ChainError, RpcUnavailable
from mesh_x402.log import Event, get_logger
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.receipts import ReceiptStore, SettleableReceipt
from mesh_x402.store.settlements import (
    Batch,
    BatchEntry,
    BatchState,
    ItemResult,
    SettlementStore,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "LOCK_FILE",
    "QUIET_SECONDS",
    "Backoff",
    "BatchReport",
    "CreditCheck",
    "ReconcileReport",
    "Reconciler",
    "settlement_item",
]

LOCK_FILE: Final = "reconcile.lock"
# The gate idle this long is a quiet moment for a due pass (`run_forever`).
QUIET_SECONDS: Final = 0.5
_RECEIPT_PAGE: Final = 500

_log = get_logger("chain")


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off while the RPC does not answer.

    Attributes:
        initial: seconds before the first retry.
        maximum: the longest wait between two attempts.
        attempts: how many passes to try before giving up (None: forever).
    """

    initial: float = 0.5
    maximum: float = 30.0
    attempts: int | None = 6

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


DEFAULT_BACKOFF: Final = Backoff()


@dataclass(frozen=True)
class BatchReport:
    """One confirmed (or abandoned) settle transaction."""

    batch_id: int
    tx_hash: str
    state: str
    settled: int
    failed: int
    total: int
    """Sum of the charges of the payments it settled (atomic units)."""
    block_number: int | None


@dataclass(frozen=True)
class CreditCheck:
    """This node's credits on chain against what its settled receipts promise."""

    agent_id: int
    on_chain: int
    """balanceOf(agentId) + everything withdrawn."""
    balance: int
    withdrawn: int
    acknowledged: int
    """Credits to this agent in receipts it signed or acknowledged whose payment is settled."""
    pending: int
    """Credits in acknowledged receipts whose payment is not settled yet."""

    @property
    def shortfall(self) -> int:
        return max(0, self.acknowledged - self.on_chain)


@dataclass
class ReconcileReport:
    """What one `run_once` did."""

    batches: list[BatchReport] = field(default_factory=list)
    settled: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    retrying: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    """Batches a previous pass left `sent` and this one resolved."""
    attempts: int = 0
    credit: CreditCheck | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, result: ItemResult) -> None:
        if result.state is PaymentState.SETTLED:
            self.settled += 1
        elif result.state is PaymentState.FAILED:
            reason = result.reason or "failed"
            self.failed[reason] = self.failed.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready object (amounts as decimal strings)."""
        credit = None
        if self.credit is not None:
            c = self.credit
            credit = {
                "agentId": c.agent_id,
                "onChain": str(c.on_chain),
                "balance": str(c.balance),
                "withdrawn": str(c.withdrawn),
                "acknowledged": str(c.acknowledged),
                "pending": str(c.pending),
                "shortfall": str(c.shortfall),
            }
        return {
            "ok": self.ok,
            "error": self.error,
            "attempts": self.attempts,
            "resumed": self.resumed,
            "settled": self.settled,
            "failed": dict(self.failed),
            "retrying": dict(self.retrying),
            "batches": [
                {
                    "id": b.batch_id,
                    "tx": b.tx_hash,
                    "state": b.state,
                    "settled": b.settled,
                    "failed": b.failed,
                    "total": str(b.total),
                    "block": b.block_number,
                }
                for b in self.batches
            ],
            "credit": credit,
        }


class SettleableSource(Protocol):
    """Where the work comes from (`store.receipts.ReceiptStore`)."""

    def settleable(self, limit: int) -> list[SettleableReceipt]:
        """Chargeable payments with a signed receipt, oldest first, at most `limit`."""
        ...

    def settleable_payment(self, payment_id: str) -> SettleableReceipt | None:
        """One payment as a settle item, if it is chargeable with a receipt."""
        ...


def _signature(text: str) -> Signature:
    raw = bytes.fromhex(text.removeprefix("0x"))
    if len(raw) != 65:
        raise ValueError(f"authorization signature is {len(raw)} bytes, not 65")
    v = raw[64]
    return Signature(v=v + 27 if v < 27 else v, r=raw[:32], s=raw[32:64])


def settlement_item(receipt: SettleableReceipt, settlement: str) -> SettlementItem:
    """The contract's `Item` for one settleable receipt (the authorization pays `settlement`)."""
    return SettlementItem(
        authorization=TransferAuthorization(
            from_=receipt.payer,
            to=settlement,
            value=receipt.value,
            valid_after=receipt.valid_after,
            valid_before=receipt.valid_before,
            nonce=bytes.fromhex(receipt.nonce.removeprefix("0x")),
        ),
        signature=_signature(receipt.signature),
        entry_agent_id=receipt.entry_agent_id,
        receipt_hash=receipt.receipt_hash,
        credits=[Credit(agent_id=c.agent_id, amount=c.amount) for c in receipt.credits],
        refund=receipt.refund,
    )


def _entry(receipt: SettleableReceipt) -> BatchEntry:
    return BatchEntry(
        payment_id=receipt.payment_id,
        receipt_hash="0x" + receipt.receipt_hash.hex(),
        payer=receipt.payer,
        nonce=receipt.nonce,
        value=receipt.value,
        charge=receipt.value - receipt.refund,
    )


class _Pacer:
    """How long one pass may still wait for the gate to be quiet (`run_forever`).

    Asked before the pass and before each of its batches: settling shares the
    node's CPU and GIL with the requests being served. The budget bounds the
    whole pass, so a gate that is never quiet still gets settled.
    """

    def __init__(self, idle_seconds: Callable[[], float], budget: float) -> None:
        self._idle_seconds = idle_seconds  # read from the pass's worker thread too
        self._budget = budget

    def delay(self) -> float:
        """Seconds to wait before the next step: 0 once the gate has been idle for
        QUIET_SECONDS, or once the budget is spent."""
        idle = self._idle_seconds()
        if idle >= QUIET_SECONDS or self._budget <= 0:
            return 0.0
        step = min(QUIET_SECONDS - idle, self._budget)
        self._budget -= step
        return step


class Reconciler:
    """Settles this node's chargeable payments and checks its credits.

    Args:
        client: the chain connection (its `confirmations` are waited for).
        settlement: the MeshSettlement binding.
        token: the payment token (read to explain a refused authorization).
        account: this node's key: the entry agent's wallet or `mesh-llm.signer`.
        journal: the payment journal.
        receipts: the receipt store (the work list and the acknowledged receipts).
        state_dir: the node's state folder (for the cross-process lock file).
        batch_size: the most items per settle transaction.
        agent_id: this node's agentId, for the credit check (None: no check).
        backoff: retry policy while the RPC does not answer.
        on_batch: called on the event loop for each confirmed batch (the blackboard).
        clock: unix time for the stored rows.
    """

    def __init__(
        self,
        *,
        client: ChainClient,
        settlement: SettlementBinding,
        token: TokenBinding,
        account: LocalAccount,
        journal: Journal,
        receipts: ReceiptStore,
        state_dir: Path,
        batch_size: int,
        agent_id: int | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_batch: Callable[[BatchReport], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._client = client
        self._settlement = settlement
        self._token = token
        self._account = account
        self._journal = journal
        self._receipts = receipts
        self._store = SettlementStore(journal)
        self._lock_path = state_dir / LOCK_FILE
        self._batch_size = batch_size
        self._agent_id = agent_id
        self._backoff = backoff
        self._on_batch = on_batch
        self._clock = clock
        self._pass_lock = asyncio.Lock()
        # Peers' receipts already found settled in the contract's logs: settled
        # stays settled, so each credit check asks the chain about new ones only.
        self._peer_settled: set[bytes] = set()

    @property
    def store(self) -> SettlementStore:
        return self._store

    # -- the loop ---------------------------------------------------------------

    async def run_once(self, *, pacer: _Pacer | None = None) -> ReconcileReport:
        """One full pass, retried with back-off while the RPC does not answer.

        Never raises for chain trouble: the report's `error` says what stopped
        it. Payments stay chargeable until a confirmed batch says otherwise.
        """
        async with self._pass_lock:
            report = ReconcileReport()
            delays = self._backoff.delays()
            while True:
                report.attempts += 1
                try:
                    await asyncio.to_thread(self._pass, report, pacer)
                except RpcUnavailable as exc:
                    limit = self._backoff.attempts
                    if limit is not None and report.attempts >= limit:
                        report.error = str(exc)
                        _log.error(
                            Event.RECONCILE_FAILED, reason=str(exc), attempts=report.attempts
                        )
                        break
                    delay = next(delays)
                    _log.warning(
                        Event.RECONCILE_RETRY, reason=str(exc), attempt=report.attempts, delay=delay
                    )
                    await asyncio.sleep(delay)
                    continue
                except ChainError as exc:
                    report.error = str(exc)
                    _log.error(Event.RECONCILE_FAILED, reason=str(exc), attempts=report.attempts)
                break
            if self._on_batch is not None:
                for batch in report.batches:
                    if batch.state == BatchState.CONFIRMED.value and batch.settled:
                        self._on_batch(batch)
            return report

    async def settle_now(self, payment_id: str) -> Settlement:
        """Settle the chargeable payment `payment_id` now (settlement mode `immediate`).

        The same journalled, crash-safe path as a pass, under the same locks:
        batches a previous pass left `sent` are resolved first, then one batch
        holding this payment (other settleable ones ride along, up to
        `batch_size`) is previewed, sent and confirmed. Tried once, without
        back-off: a client is waiting. The outcome is what the journal says
        afterwards, so a payment the loop settled meanwhile is reported settled.

        Returns:
            settled (with the transaction), failed for good (with the
            journal's reason), or deferred (the RPC did not answer, the item
            must wait, or it has no receipt): still chargeable, for the loop.
        """
        async with self._pass_lock:
            report = ReconcileReport()
            try:
                await asyncio.to_thread(self._settle_one, payment_id, report)
            except ChainError as exc:  # RpcUnavailable included: the loop retries
                report.error = str(exc)
                _log.warning(Event.SETTLEMENT_DEFERRED, receipt_id=payment_id, reason=str(exc))
        if self._on_batch is not None:
            for batch in report.batches:
                if batch.state == BatchState.CONFIRMED.value and batch.settled:
                    self._on_batch(batch)
        record = self._journal.get(payment_id)
        if record is not None and record.state is PaymentState.SETTLED:
            return Settlement(ok=True, transaction=record.transaction or "")
        if record is not None and record.state is PaymentState.FAILED:
            return Settlement(
                ok=False, transaction=record.transaction or "", reason=record.reason or "failed"
            )
        return Settlement(ok=False, transaction="", deferred=True)

    async def run_forever(
        self,
        interval: float,
        *,
        idle_seconds: Callable[[], float] | None = None,
        idle_wait: float = 0.0,
    ) -> None:
        """Reconcile every `interval` seconds until cancelled (the task inside `serve`).

        Args:
            interval: seconds between the end of a pass and the next.
            idle_seconds: how long the gate has been idle (`http.activity`);
                a due pass, and each of its batches, first waits until that
                reaches `QUIET_SECONDS`, so that settling does not slow the
                requests being served (it shares their CPU and GIL).
            idle_wait: the longest a pass waits for quiet moments, in all; 0:
                it never waits.
        """
        while True:
            pacer = None
            if idle_seconds is not None and idle_wait > 0:
                pacer = _Pacer(idle_seconds, idle_wait)
                # Polled, not awaited on an Event: the gate starts and ends a
                # request every few ms under load; signalling each costs them all.
                while delay := pacer.delay():  # noqa: ASYNC110
                    await asyncio.sleep(delay)
            try:
                await self.run_once(pacer=pacer)
            except Exception as exc:  # noqa: BLE001 - the loop outlives one bad pass
                # A bug or a local fault (e.g. the disk): say so and try again next
                # interval; everything the pass committed is consistent on its own.
                _log.error(Event.RECONCILE_FAILED, reason=repr(exc))
            await asyncio.sleep(interval)

    # -- one pass (worker thread) -----------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the state folder's reconcile lock (released by the kernel on SIGKILL)."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _pass(self, report: ReconcileReport, pacer: _Pacer | None) -> None:
        with self._exclusive():
            # Payments not to try again in this pass: a retry outcome, or a batch
            # that reverted (sending the same items again at once would only
            # burn gas the same way; the next pass tries them again).
            retrying: set[str] = set()
            for batch in self._store.open_batches():
                self._resolve(batch, report, retrying)
                report.resumed += 1
            first = True
            while True:
                if pacer is not None and not first:
                    while delay := pacer.delay():
                        time.sleep(delay)  # this worker thread only
                first = False
                wanted = self._batch_size + len(retrying)
                candidates = [
                    r for r in self._receipts.settleable(wanted) if r.payment_id not in retrying
                ][: self._batch_size]
                if not candidates:
                    break
                self._settle(candidates, report, retrying)
            report.credit = self.check_credits()

    def _settle_one(self, payment_id: str, report: ReconcileReport) -> None:
        """`settle_now`'s chain work (worker thread)."""
        with self._exclusive():
            retrying: set[str] = set()
            for batch in self._store.open_batches():
                self._resolve(batch, report, retrying)
                report.resumed += 1
            target = self._receipts.settleable_payment(payment_id)
            if target is None or payment_id in retrying:
                return  # settled or failed meanwhile, no receipt, or returned to the pool
            riders = [
                r
                for r in self._receipts.settleable(self._batch_size + len(retrying))
                if r.payment_id != payment_id and r.payment_id not in retrying
            ][: self._batch_size - 1]
            self._settle([target, *riders], report, retrying)

    def _chain_now(self) -> int:
        block = self._client.run(
            "eth_getBlockByNumber", lambda: self._client.w3.eth.get_block("latest")
        )
        return int(block["timestamp"])

    def _preview(
        self, items: Sequence[SettlementItem], call: EncodedCall
    ) -> list[SettleStatus | str]:
        """The contract's answer for each item of `call` (their encoding) now; a reason
        string for an item whose own call reverts (a batch that reverts is split into
        singles)."""
        try:
            return list(self._settlement.preview(self._account.address, call))
        except TransactionReverted as exc:
            if len(items) == 1:
                return [f"settle_reverted: {exc}"]
        return [
            self._preview([item], self._settlement.settle_function([item]))[0] for item in items
        ]

    def _settle(
        self, candidates: list[SettleableReceipt], report: ReconcileReport, retrying: set[str]
    ) -> None:
        address = self._settlement.address
        unbatched: list[ItemResult] = []
        usable: list[SettleableReceipt] = []
        items: list[SettlementItem] = []
        for receipt in candidates:
            try:
                items.append(settlement_item(receipt, address))
            except ValueError as exc:  # e.g. a signature that is not 65 bytes: never settleable
                unbatched.append(
                    ItemResult(receipt.payment_id, None, PaymentState.FAILED, f"malformed: {exc}")
                )
                continue
            usable.append(receipt)
        candidates = usable
        now = self._chain_now()
        send: list[tuple[SettleableReceipt, SettlementItem]] = []
        # Encoded once: the same bytes are previewed and, when every item passes, sent.
        call = self._settlement.settle_function(items) if items else None
        statuses = self._preview(items, call) if call is not None else []
        for receipt, item, status in zip(candidates, items, statuses, strict=True):
            if isinstance(status, str):
                unbatched.append(ItemResult(receipt.payment_id, None, PaymentState.FAILED, status))
            elif status is SettleStatus.SETTLED:
                send.append((receipt, item))
            else:
                result = self._result(_entry(receipt), status, now, tx=None)
                if result.state is None:
                    retrying.add(receipt.payment_id)
                    reason = result.reason or "retry"
                    report.retrying[reason] = report.retrying.get(reason, 0) + 1
                unbatched.append(result)
        self._store.finish_unbatched(unbatched)
        for result in unbatched:
            report.count(result)
        if not send:
            return
        what = f"settle {len(send)} payments"
        if call is None or len(send) < len(items):
            call = self._settlement.settle_function([i for _, i in send])
        signed = self._client.prepare(self._account, call, what)
        try:
            batch_id = self._store.record_sent(
                signed, [_entry(r) for r, _ in send], now=self._clock()
            )
        except BaseException:
            self._client.forget_nonce(signed.sender)  # never sent: its nonce is still free
            raise
        _log.info(Event.SETTLEMENT_BATCH_SENT, batch=batch_id, tx=signed.tx_hash, items=len(send))
        self._client.broadcast(signed, what)
        batch = self._store.get(batch_id)
        assert batch is not None  # committed just above
        self._confirm(batch, report, retrying)

    def _result(
        self, entry: BatchEntry, status: SettleStatus, now: int, *, tx: str | None
    ) -> ItemResult:
        """One item's status turned into its journal outcome (`chain/outcomes.py`)."""
        facts = self._authorization_facts(entry, status, now)
        outcome = classify(status, facts)
        if outcome.kind is OutcomeKind.SETTLED:
            # NONCE_USED settles only with the transaction that did it: record that one.
            tx = facts.settlement_tx or tx
            return ItemResult(entry.payment_id, int(status), PaymentState.SETTLED, None, tx or "")
        if outcome.kind is OutcomeKind.FAILED:
            return ItemResult(
                entry.payment_id, int(status), PaymentState.FAILED, outcome.reason, tx
            )
        return ItemResult(entry.payment_id, int(status), None, outcome.reason)

    def _authorization_facts(
        self, entry: BatchEntry, status: SettleStatus, now: int
    ) -> AuthorizationFacts:
        """The chain facts `classify` needs for `status`, read only when it needs them."""
        payment = self._journal.get(entry.payment_id)
        after, before = (payment.valid_after, payment.valid_before) if payment else (0, 0)
        facts = AuthorizationFacts(
            now=now, valid_after=after, valid_before=before, value=entry.value
        )
        if status is SettleStatus.NONCE_USED:
            return replace(facts, nonce_used=True, settlement_tx=self._settled_by_contract(entry))
        if status is SettleStatus.AUTHORIZATION_FAILED:
            nonce = bytes.fromhex(entry.nonce.removeprefix("0x"))
            return replace(
                facts,
                payer_balance=self._token.balance_of(entry.payer),
                nonce_used=self._token.authorization_state(entry.payer, nonce),
            )
        return facts

    def _settled_by_contract(self, entry: BatchEntry) -> str | None:
        """The transaction that settled `entry`'s authorization under its receipt hash."""
        return self._settlement.settlement_of(
            bytes.fromhex(entry.receipt_hash.removeprefix("0x")),
            entry.payer,
            bytes.fromhex(entry.nonce.removeprefix("0x")),
        )

    def _resolve(self, batch: Batch, report: ReconcileReport, retrying: set[str]) -> None:
        """Finish a batch a previous pass left `sent` (see the module docstring, step 1)."""
        if self._client.receipt_of(batch.tx_hash) is None:
            if self._client.mined_nonce(batch.sender) <= batch.nonce:
                _log.warning(Event.SETTLEMENT_REBROADCAST, batch=batch.id, tx=batch.tx_hash)
                self._client.broadcast(batch.signed, f"settle batch {batch.id} again")
            elif self._client.receipt_of(batch.tx_hash) is None:
                self._replaced(batch, report)
                return
        self._confirm(batch, report, retrying)

    def _replaced(self, batch: Batch, report: ReconcileReport) -> None:
        """The batch's nonce went to another transaction: ask the contract's logs per item."""
        results = []
        for entry in batch.entries:
            tx = self._settled_by_contract(entry)
            if tx is not None:
                results.append(ItemResult(entry.payment_id, None, PaymentState.SETTLED, None, tx))
            else:
                results.append(ItemResult(entry.payment_id, None, None, "batch_replaced"))
        reason = f"nonce {batch.nonce} of {batch.sender} was used by another transaction"
        self._store.resolve(batch.id, BatchState.FAILED, results, now=self._clock(), reason=reason)
        self._report(batch, BatchState.FAILED, results, None, report)
        _log.warning(Event.SETTLEMENT_BATCH_FAILED, batch=batch.id, tx=batch.tx_hash, reason=reason)

    def _confirm(self, batch: Batch, report: ReconcileReport, retrying: set[str]) -> None:
        """Wait for the batch's confirmations and record what each item became."""
        receipt = self._client.wait(batch.tx_hash, f"settle batch {batch.id}")
        block = int(receipt["blockNumber"])
        if receipt["status"] != 1:
            results = [
                ItemResult(e.payment_id, None, None, "batch_reverted") for e in batch.entries
            ]
            retrying.update(e.payment_id for e in batch.entries)
            self._store.resolve(
                batch.id,
                BatchState.FAILED,
                results,
                now=self._clock(),
                reason="reverted",
                block_number=block,
            )
            self._report(batch, BatchState.FAILED, results, block, report)
            _log.warning(
                Event.SETTLEMENT_BATCH_FAILED, batch=batch.id, tx=batch.tx_hash, reason="reverted"
            )
            return
        statuses = self._settlement.statuses(receipt, len(batch.entries))
        now = self._chain_now()
        results = [
            self._result(entry, status, now, tx=batch.tx_hash)
            for entry, status in zip(batch.entries, statuses, strict=True)
        ]
        self._store.resolve(
            batch.id, BatchState.CONFIRMED, results, now=self._clock(), block_number=block
        )
        summary = self._report(batch, BatchState.CONFIRMED, results, block, report)
        _log.info(
            Event.SETTLEMENT_BATCH_CONFIRMED,
            batch=batch.id,
            tx=batch.tx_hash,
            block=block,
            settled=summary.settled,
            failed=summary.failed,
            total=summary.total,
        )

    def _report(
        self,
        batch: Batch,
        state: BatchState,
        results: Sequence[ItemResult],
        block: int | None,
        report: ReconcileReport,
    ) -> BatchReport:
        charges = {e.payment_id: e.charge for e in batch.entries}
        settled = [r for r in results if r.state is PaymentState.SETTLED]
        summary = BatchReport(
            batch_id=batch.id,
            tx_hash=batch.tx_hash,
            state=state.value,
            settled=len(settled),
            failed=sum(1 for r in results if r.state is PaymentState.FAILED),
            total=sum(charges[r.payment_id] for r in settled),
            block_number=block,
        )
        report.batches.append(summary)
        for result in results:
            report.count(result)
        return summary

    # -- credits ------------------------------------------------------------------

    def check_credits(self) -> CreditCheck | None:
        """This agent's on-chain credits against its settled, acknowledged receipts.

        Blocking (chain reads): call it from a worker thread. None when the
        node has no agentId.
        """
        if self._agent_id is None:
            return None
        me = self._agent_id
        acknowledged = pending = 0
        after = 0.0
        while True:
            page = self._receipts.receipts(limit=_RECEIPT_PAGE, after=after)
            for stored in page:
                amount = sum(c.amount for c in stored.receipt.credits if c.agent_id == me)
                if amount == 0 or not self._acknowledged(stored.payment_id, stored.receipt_hash):
                    continue
                state = self._settlement_of(
                    stored.payment_id,
                    stored.receipt_hash,
                    stored.receipt.payer,
                    stored.receipt.nonce,
                )
                if state is PaymentState.SETTLED:
                    acknowledged += amount
                elif state is None:
                    pending += amount
            if len(page) < _RECEIPT_PAGE:
                break
            after = page[-1].created_at
        balance = self._settlement.balance_of(me)
        withdrawn = self._settlement.withdrawn(me)
        check = CreditCheck(
            agent_id=me,
            on_chain=balance + withdrawn,
            balance=balance,
            withdrawn=withdrawn,
            acknowledged=acknowledged,
            pending=pending,
        )
        if check.shortfall:
            _log.error(
                Event.SETTLEMENT_SHORTFALL,
                agent_id=me,
                on_chain=check.on_chain,
                acknowledged=acknowledged,
                shortfall=check.shortfall,
            )
        return check

    def _acknowledged(self, payment_id: str | None, receipt_hash: bytes) -> bool:
        if payment_id is not None:  # signed by this node as the entry node
            return True
        return any(ack.agent_id == self._agent_id for ack in self._receipts.acks(receipt_hash))

    def _settlement_of(
        self, payment_id: str | None, receipt_hash: bytes, payer: str, nonce: bytes
    ) -> PaymentState | None:
        """SETTLED, a final state that will never pay (failed, released), or None (pending).

        This node's own payments are known from its journal; a peer's only
        from the contract's `PaymentSettled` logs, so a peer's failed payment
        stays pending here.
        """
        if payment_id is not None:
            payment = self._journal.get(payment_id)
            if payment is None or payment.state in (PaymentState.ACCEPTED, PaymentState.CHARGEABLE):
                return None
            return payment.state
        if receipt_hash in self._peer_settled:
            return PaymentState.SETTLED
        if self._settlement.settlement_of(receipt_hash, payer, nonce) is None:
            return None
        self._peer_settled.add(receipt_hash)
        return PaymentState.SETTLED
