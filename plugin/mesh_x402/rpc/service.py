"""The operator API's logic, free of any transport.

`OperatorService` answers the `mesh_x402.v1.Operator` requests with the
generated messages, from the ledger (journal, receipts, settlements) and,
for balances and reconciliation, the chain through the reconciler. It knows
nothing of gRPC: `rpc/server.py` adapts it to a `grpc.aio` server, and tests
or a CLI may call it directly. Blocking work (SQLite, chain reads) runs in
worker threads so the event loop, which also serves the paid HTTP traffic,
never waits. Refusals are `OperatorError`s with a stable code the adapter
maps to a gRPC status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, Literal

from mesh_x402._pb.mesh_x402.v1 import operator_pb2 as pb
from mesh_x402.chain.reconciler import Reconciler, ReconcileReport
from mesh_x402.errors import PluginError
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore, StoredReceipt
from mesh_x402.store.settlements import Batch, SettlementStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "NodeIdentity",
    "OperatorError",
    "OperatorService",
    "receipt_record",
]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
ErrorCode = Literal["not_found", "invalid_argument", "failed_precondition", "unavailable"]


class OperatorError(PluginError):
    """A request the operator API refuses; `code` says which kind of refusal."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


@dataclass(frozen=True)
class NodeIdentity:
    """What the node knows about itself at start (no chain round trip per request)."""

    signer: str
    agent_id: int | None
    chain_id: int
    identity_registry: str
    settlement: str
    token: str
    version: str


def receipt_record(stored: StoredReceipt, journal: Journal) -> pb.ReceiptRecord:
    """A stored receipt as the API (and `mesh-x402 receipts`) shows it, with its payment state."""
    receipt = stored.receipt
    record = pb.ReceiptRecord(
        receipt_hash="0x" + stored.receipt_hash.hex(),
        payment_id=stored.payment_id or "",
        payer=receipt.payer,
        nonce="0x" + receipt.nonce.hex(),
        value=str(receipt.value),
        charge=str(receipt.charge),
        refund=str(receipt.refund),
        entry_agent_id=receipt.entry_agent_id,
        credits=[pb.Credit(agent_id=c.agent_id, amount=str(c.amount)) for c in receipt.credits],
        request_id=receipt.request_id,
        model=receipt.model,
        prompt_tokens=receipt.prompt_tokens,
        completion_tokens=receipt.completion_tokens,
        price_version=receipt.price_version,
        timestamp=receipt.timestamp,
        policy=receipt.policy,
        signature="0x" + stored.signature.hex(),
        created_at=stored.created_at,
    )
    payment = journal.get(stored.payment_id) if stored.payment_id else None
    if payment is not None:
        record.payment_state = payment.state.value
        record.transaction = payment.transaction or ""
    return record


def _batch(batch: Batch) -> pb.Batch:
    return pb.Batch(
        id=batch.id,
        tx_hash=batch.tx_hash,
        state=batch.state.value,
        nonce=batch.nonce,
        items=len(batch.entries),
        block_number=batch.block_number or 0,
        reason=batch.reason or "",
    )


class OperatorService:
    """The operator API over this node's ledger and chain.

    Args:
        identity: the node's identity, fixed at start.
        journal: the payment journal.
        receipts: the receipt store (same file).
        reconciler: the node's reconciler; None when the node has no chain
            configured (balances and reconciliation are then refused).
        mesh: returns (local peer id, mesh id) from the mesh view, if known.
        poll_interval: how often a receipt stream looks for new receipts.
        clock: unix time (the start of a stream of only-new receipts).
    """

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        journal: Journal,
        receipts: ReceiptStore,
        reconciler: Reconciler | None,
        mesh: Callable[[], tuple[str | None, str | None]] = lambda: (None, None),
        poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity = identity
        self._journal = journal
        self._receipts = receipts
        self._settlements = SettlementStore(journal)
        self.reconciler = reconciler
        """Set later when the chain comes up after the API (serve connects in the background)."""
        self._mesh = mesh
        self._poll = poll_interval
        self._clock = clock

    async def get_identity(self, _request: pb.GetIdentityRequest) -> pb.Identity:
        me = self._identity
        peer_id, mesh_id = self._mesh()
        return pb.Identity(
            signer=me.signer,
            registered=me.agent_id is not None,
            agent_id=me.agent_id or 0,
            chain_id=me.chain_id,
            identity_registry=me.identity_registry,
            settlement=me.settlement,
            token=me.token,
            peer_id=peer_id or "",
            mesh_id=mesh_id or "",
            version=me.version,
        )

    def _require_reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise OperatorError("failed_precondition", "this node has no chain configured")
        return self.reconciler

    async def get_balances(self, _request: pb.GetBalancesRequest) -> pb.Balances:
        reconciler = self._require_reconciler()
        credit = await asyncio.to_thread(reconciler.check_credits)
        if credit is None:
            raise OperatorError(
                "failed_precondition", "this node has no agentId: run `mesh-x402 register`"
            )
        unsettled = await asyncio.to_thread(self._settlements.unsettled_charges)
        return pb.Balances(
            agent_id=credit.agent_id,
            credited=str(credit.balance),
            withdrawn=str(credit.withdrawn),
            acknowledged=str(credit.acknowledged),
            pending=str(credit.pending),
            shortfall=str(credit.shortfall),
            unsettled_charges=str(unsettled),
        )

    async def list_receipts(self, request: pb.ListReceiptsRequest) -> pb.ListReceiptsResponse:
        size = request.page_size or DEFAULT_PAGE_SIZE
        if size > MAX_PAGE_SIZE:
            raise OperatorError("invalid_argument", f"page_size must be at most {MAX_PAGE_SIZE}")
        after = 0.0
        if request.page_token:
            try:
                after = float(request.page_token)
            except ValueError:
                raise OperatorError(
                    "invalid_argument", f"page_token {request.page_token!r} is not one we issued"
                ) from None
        page = await asyncio.to_thread(self._page, after, size)
        next_token = repr(page[-1].created_at) if len(page) == size else ""
        return pb.ListReceiptsResponse(receipts=page, next_page_token=next_token)

    def _page(self, after: float, size: int) -> list[pb.ReceiptRecord]:
        stored = self._receipts.receipts(limit=size, after=after)
        return [receipt_record(s, self._journal) for s in stored]

    async def get_receipt(self, request: pb.GetReceiptRequest) -> pb.ReceiptRecord:
        text = request.receipt_hash.removeprefix("0x")
        try:
            receipt_hash = bytes.fromhex(text)
        except ValueError:
            receipt_hash = b""
        if len(receipt_hash) != 32:
            raise OperatorError(
                "invalid_argument",
                f"receipt_hash must be 32 bytes of 0x hex, got {request.receipt_hash!r}",
            )

        def read() -> pb.ReceiptRecord | None:
            stored = self._receipts.get(receipt_hash)
            return None if stored is None else receipt_record(stored, self._journal)

        record = await asyncio.to_thread(read)
        if record is None:
            raise OperatorError("not_found", f"no receipt {request.receipt_hash}")
        return record

    async def stream_receipts(
        self, request: pb.StreamReceiptsRequest
    ) -> AsyncIterator[pb.ReceiptRecord]:
        """Receipts stored after `request.after` (or from now), then each new one, forever.

        Polls the store: receipts are written by other tasks and by other
        processes sharing the file, and a poll sees them all.
        """
        cursor = request.after or self._clock()
        while True:
            page = await asyncio.to_thread(self._page, cursor, DEFAULT_PAGE_SIZE)
            for record in page:
                yield record
            if page:
                cursor = page[-1].created_at
            if len(page) < DEFAULT_PAGE_SIZE:
                await asyncio.sleep(self._poll)

    async def get_settlement_status(
        self, _request: pb.GetSettlementStatusRequest
    ) -> pb.SettlementStatus:
        summary = await asyncio.to_thread(self._settlements.summary)
        status = pb.SettlementStatus(payments=summary.payments, batches=summary.batches)
        if summary.last_batch is not None:
            status.last_batch.CopyFrom(_batch(summary.last_batch))
        return status

    async def reconcile(self, _request: pb.ReconcileRequest) -> pb.ReconcileResponse:
        report: ReconcileReport = await self._require_reconciler().run_once()

        def read() -> list[pb.Batch]:
            found = (self._settlements.get(b.batch_id) for b in report.batches)
            return [_batch(batch) for batch in found if batch is not None]

        batches = await asyncio.to_thread(read)
        return pb.ReconcileResponse(
            ok=report.ok,
            error=report.error or "",
            settled=report.settled,
            failed=report.failed,
            retrying=report.retrying,
            batches=batches,
            shortfall=str(report.credit.shortfall) if report.credit else "0",
        )
