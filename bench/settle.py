"""Reconciliation: the time the reconciler takes to settle N payments (a benchmark helper).

The node, its contracts and its agents come from the integration tests'
`settlement_kit.make_world` (the same setup the reconciler's tests use),
pointed at the counting RPC proxy. N payments are journalled as the gate
leaves them under a host: claimed (`Journal.claim`), then chargeable with
the entry node's signed EIP-712 receipt (`ReceiptStore.charge_with_receipt`),
in the project's target shape: a two-way credit split and a refund. Then one
`Reconciler.run_once()` (batches of `[settlement] batch_size`, 50) is timed
until every payment is settled; its transactions' gas and its JSON-RPC
calls are read from the chain and the proxy.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mesh_x402.commands._chain import connect_node
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.receipts import ReceiptStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from settlement_kit import SettleWorld, make_world, payer

VALUE = 1_000_000
CHARGE = 750_000
PAYERS = 20
BATCH = 50


@dataclass(frozen=True)
class SettleFigures:
    payments: int
    seconds: float
    settled: int
    batches: int
    gas_per_payment: float
    rpc_calls: int


def _fill(world: SettleWorld, journal: Journal, receipts: ReceiptStore, count: int) -> None:
    """Journal `count` chargeable payments with signed receipts (split + refund)."""
    payers = [payer(i) for i in range(PAYERS)]
    for account in payers:
        world.fund(account, VALUE * (count // PAYERS + 2))
    peer = world.peers[0]
    credits = [(world.agent_id, CHARGE * 6 // 10), (peer, CHARGE - CHARGE * 6 // 10)]
    for i in range(count):
        who = payers[i % PAYERS]
        world.pay(receipts, journal, who, value=VALUE, charge=CHARGE, credits=credits)


def settle_payments(rpc_url: str, count: int, stats: Any) -> SettleFigures:
    """Journal `count` payments, then time one reconciler pass settling them all.

    Args:
        rpc_url: the chain's URL (the counting proxy).
        count: payments to settle.
        stats: `() -> int`, the proxy's call count so far.
    """
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as folder:
        world = make_world(SimpleNamespace(url=rpc_url), Path(folder), batch_size=BATCH)  # type: ignore[arg-type]
        journal = Journal.in_state_dir(world.state_dir)
        receipts = ReceiptStore(journal)
        try:
            _fill(world, journal, receipts, count)
            node = connect_node(world.config_path)
            reconciler = reconciler_for(node, journal)
            calls = stats()
            start = time.monotonic()
            report = asyncio.run(reconciler.run_once())
            seconds = time.monotonic() - start
            calls = stats() - calls
            if report.error is not None or report.settled != count:
                problem = report.error or report.failed
                raise RuntimeError(f"reconciler settled {report.settled} of {count}: {problem}")
            if journal.count(PaymentState.SETTLED) != count:
                raise RuntimeError("the journal does not hold every payment as settled")
            gas = sum(
                int(world.client.w3.eth.get_transaction_receipt(batch.tx_hash)["gasUsed"])  # type: ignore[arg-type]
                for batch in report.batches
            )
        finally:
            journal.close()
    return SettleFigures(
        payments=count,
        seconds=seconds,
        settled=report.settled,
        batches=len(report.batches),
        gas_per_payment=gas / count,
        rpc_calls=calls,
    )
