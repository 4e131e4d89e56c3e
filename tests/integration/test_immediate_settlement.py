"""Settlement mode `immediate`: a non-streamed answer is released only once it is paid on chain.

A real `mesh-x402 serve` process under the host double (private mesh, so
payments get signed receipts), with `[settlement] mode = "immediate"`, its
gateway on a free loopback port in front of the fake mesh-llm API, on the
contracts of a `settlement_kit` world on anvil. The official x402 SDK
client pays through the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fault_kit import BODY, PaidNode, paying_node, until
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.store.journal import PaymentState
from mesh_x402.store.receipts import ReceiptStore
from settlement_kit import payer
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm.exact.register import register_exact_evm_client

pytestmark = pytest.mark.integration

_TRANSFER_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


@pytest.fixture
async def node(anvil: Anvil, tmp_path: Path) -> AsyncIterator[PaidNode]:
    """A hosted node in mode immediate whose reconciler loop also runs (every 0.5 s)."""
    async with paying_node(
        anvil, tmp_path, batch_size=3, interval=0.5, settlement='mode = "immediate"\n'
    ) as (paid, _):
        yield paid


def _sdk(who: LocalAccount) -> httpx.AsyncClient:
    client = x402Client()
    register_exact_evm_client(client, who)
    client.set_spend_controls(False)  # a local chain's token is not on the SDK's list
    return httpx.AsyncClient(transport=x402AsyncTransport(client), timeout=120)


def _decode(header: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(header))
    return decoded


async def _ready(node: PaidNode) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        await node.requirements(client)  # the gate answers 402 once it is up


async def test_sdk_payment_is_settled_before_the_answer(node: PaidNode) -> None:
    """The answer carries a mined settle transaction whose PaymentSettled event is
    this payment's receipt; the journal says settled with that transaction."""
    world = node.world
    who = payer(41)
    await asyncio.to_thread(world.fund, who)
    await _ready(node)
    async with _sdk(who) as client:
        response = await client.post(f"{node.gateway}/v1/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    settle = _decode(response.headers["payment-response"])
    assert settle["success"] is True
    assert settle["extra"]["settlement"] == "immediate"
    tx = settle["transaction"]
    assert tx.startswith("0x")
    assert len(tx) == 66

    mined = await asyncio.to_thread(world.client.receipt_of, tx)
    assert mined is not None
    assert mined["status"] == 1
    receipt_id = settle["extra"]["receiptId"]
    record = node.record(receipt_id)
    with node.journal() as journal:
        stored = ReceiptStore(journal).for_payment(receipt_id)
    assert stored is not None
    assert record.state is PaymentState.SETTLED
    assert record.transaction == tx
    assert record.charge is not None
    assert settle["amount"] == str(record.charge)
    # The contract's PaymentSettled event for this receipt's authorization is in that tx.
    settled_in = await asyncio.to_thread(
        world.settlement.settlement_of,
        stored.receipt_hash,
        record.payer,
        bytes.fromhex(record.nonce.removeprefix("0x")),
    )
    assert settled_in == tx
    assert await asyncio.to_thread(world.token.balance_of, who.address) == 10**9 - record.charge


async def test_payer_moving_its_funds_gets_402_and_no_completion(node: PaidNode) -> None:
    """The payer empties its wallet after the gate last read its balance: the
    gate serves on the cached balance, settlement finds the payer short, and
    the client gets 402 with the reason, not the completion; nothing is charged."""
    world = node.world
    who = payer(42)
    await asyncio.to_thread(world.fund, who, 10**6)
    await _ready(node)
    async with httpx.AsyncClient(timeout=120) as client:
        first = await node.pay_once(client, *node.sign(who, await node.requirements(client)))
        assert first.accepted  # settled; the gate now holds the payer's balance in cache

        def empty_wallet() -> None:
            w3 = world.client.w3
            w3.provider.make_request("anvil_setBalance", [who.address, hex(10**18)])  # type: ignore[arg-type]
            left = world.token.balance_of(who.address)
            token = w3.eth.contract(address=world.token.address, abi=_TRANSFER_ABI)
            sink = dev_account(7).address
            world.client.transact(who, token.functions.transfer(sink, left), "empty the payer")

        await asyncio.to_thread(empty_wallet)
        assert await asyncio.to_thread(world.token.balance_of, who.address) == 0

        header, _ = node.sign(who, await node.requirements(client))
        response = await client.post(
            f"{node.gateway}/v1/chat/completions", json=BODY, headers={"payment-signature": header}
        )
    assert response.status_code == 402, response.text
    assert "choices" not in response.json()
    assert response.json()["error"]["code"] == "invalid_exact_evm_insufficient_balance"
    settle = _decode(response.headers["payment-response"])
    assert settle["success"] is False
    assert settle["errorReason"] == "invalid_exact_evm_insufficient_balance"
    assert settle["amount"] == "0"
    assert settle["extra"]["journalReason"] == "payer_insufficient_funds"
    record = node.record(settle["extra"]["receiptId"])
    assert record.state is PaymentState.FAILED
    assert record.reason == "payer_insufficient_funds"


async def test_streamed_request_is_served_then_settled_by_the_loop(node: PaidNode) -> None:
    """Mode immediate is for non-streamed answers: a stream flows as in mode
    deferred (no transaction in its head) and the reconciler loop settles it."""
    world = node.world
    who = payer(43)
    await asyncio.to_thread(world.fund, who)
    await _ready(node)
    body = {**BODY, "stream": True}
    async with (
        _sdk(who) as client,
        client.stream("POST", f"{node.gateway}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        settle = _decode(response.headers["payment-response"])
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert settle["success"] is True
    assert settle["transaction"] == ""
    assert settle["extra"]["settlement"] == "deferred"
    receipt_id = settle["extra"]["receiptId"]

    def settled() -> bool:
        return node.states([receipt_id])[receipt_id][0] is PaymentState.SETTLED

    await until(settled, f"the loop to settle {receipt_id}")
    record = node.record(receipt_id)
    assert record.transaction
    mined = await asyncio.to_thread(world.client.receipt_of, record.transaction)
    assert mined is not None
    assert mined["status"] == 1
