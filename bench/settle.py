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
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mesh_x402.chain.eip712 import TransferAuthorization, sign_transfer_authorization
from mesh_x402.commands._chain import connect_node
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.core.receipts import Credit, Receipt, ReceiptDomain, receipt_digest, sign_receipt
from mesh_x402.store.journal import Journal, NewPayment, PaymentState
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
    name, version = world.token.name(), world.token.version()
    chain_id = world.client.chain_id
    payers = [payer(i) for i in range(PAYERS)]
    for account in payers:
        world.fund(account, VALUE * (count // PAYERS + 2))
    domain = ReceiptDomain(chain_id, world.settlement.address)
    node_key = bytes(world.node.key)
    now = int(time.time())
    peer = world.peers[0]
    credits = sorted([(world.agent_id, CHARGE * 6 // 10), (peer, CHARGE - CHARGE * 6 // 10)])
    for i in range(count):
        who = payers[i % PAYERS]
        nonce = os.urandom(32)
        auth = TransferAuthorization(
            from_=who.address,
            to=world.settlement.address,
            value=VALUE,
            valid_after=0,
            valid_before=now + 7200,
            nonce=nonce,
        )
        signature = sign_transfer_authorization(
            bytes(who.key),
            auth,
            token_name=name,
            token_version=version,
            chain_id=chain_id,
            token=world.token.address,
        )
        payment_id = uuid.uuid4().hex
        journal.claim(
            NewPayment(
                receipt_id=payment_id,
                request_id=f"req-{payment_id}",
                payer=who.address.lower(),
                nonce="0x" + nonce.hex(),
                value=VALUE,
                valid_after=0,
                valid_before=auth.valid_before,
                signature="0x" + signature.packed.hex(),
                network=f"eip155:{chain_id}",
                asset=world.token.address,
                pay_to=world.settlement.address,
                model="bench",
                x402_version=2,
            ),
            spendable=None,
        )
        receipt = Receipt(
            payer=who.address,
            nonce=nonce,
            value=VALUE,
            request_id=f"req-{payment_id}",
            model="bench",
            prompt_tokens=10,
            completion_tokens=20,
            price_version=1,
            timestamp=now,
            charge=CHARGE,
            refund=VALUE - CHARGE,
            entry_agent_id=world.agent_id,
            credits=tuple(Credit(agent_id=a, amount=m) for a, m in credits),
            policy="vram-proportional",
        )
        receipts.charge_with_receipt(
            payment_id,
            receipt=receipt,
            receipt_hash=receipt_digest(receipt, domain),
            signature=sign_receipt(node_key, receipt, domain),
        )


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
