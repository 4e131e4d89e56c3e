"""The operator API through a real grpc.aio server and the generated client.

The node's ledger holds real signed payments and receipts (settlement_kit),
its chain is the session's anvil with freshly deployed contracts; the server
listens on a Unix socket (and, once, on a loopback TCP port) and the client
is `operator_pb2_grpc.OperatorStub` over a real channel.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc import aio
from mesh_x402 import __version__
from mesh_x402._pb.mesh_x402.v1 import operator_pb2 as pb
from mesh_x402._pb.mesh_x402.v1 import operator_pb2_grpc as pb_grpc
from mesh_x402.chain.anvil import Anvil
from mesh_x402.commands._chain import connect_node
from mesh_x402.commands._settlement import SettlementRuntime
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.config import NodeConfig, OperatorConfig
from mesh_x402.keys import NodeKey
from mesh_x402.rpc.server import OperatorServer, resolve_listen
from mesh_x402.rpc.service import NodeIdentity, OperatorService
from mesh_x402.store.journal import Journal, NewPayment
from mesh_x402.store.receipts import ReceiptStore
from settlement_kit import Ledger, SettleWorld, make_world, payer

pytestmark = pytest.mark.integration

PEER_ID = "ab" * 32


@dataclass
class Api:
    world: SettleWorld
    journal: Journal
    receipts: ReceiptStore
    stub: pb_grpc.OperatorStub
    hashes: list[bytes]


async def _serve(
    world: SettleWorld, address: str, ledger: Ledger
) -> tuple[OperatorServer, Journal, ReceiptStore]:
    journal, receipts = ledger(world.state_dir)
    node = await asyncio.to_thread(connect_node, world.config_path)
    assert world.deployment.identity_registry is not None
    service = OperatorService(
        identity=NodeIdentity(
            signer=world.node.address,
            agent_id=world.agent_id,
            chain_id=31337,
            identity_registry=world.deployment.identity_registry,
            settlement=world.settlement.address,
            token=world.token.address,
            version=__version__,
        ),
        journal=journal,
        receipts=receipts,
        reconciler=reconciler_for(node, journal),
        mesh=lambda: (PEER_ID, "m" * 32),
        poll_interval=0.05,
    )
    server = OperatorServer(service, address)
    await server.start()
    return server, journal, receipts


@pytest.fixture
async def api(anvil: Anvil, tmp_path: Path, ledger: Ledger) -> AsyncIterator[Api]:
    world = await asyncio.to_thread(make_world, anvil, tmp_path / "node", batch_size=10)
    with tempfile.TemporaryDirectory(prefix="op-") as short:  # sun_path is short
        server, journal, receipts = await _serve(world, f"unix:{short}/operator.sock", ledger)
        world.fund(payer(20))
        hashes = [
            world.pay(receipts, journal, payer(20), value=1_000, charge=100 * (n + 1))[1]
            for n in range(5)
        ]
        async with aio.insecure_channel(server.address) as channel:
            yield Api(world, journal, receipts, pb_grpc.OperatorStub(channel), hashes)
        await server.stop(0)


class TestOperatorApi:
    async def test_identity(self, api: Api) -> None:
        """GetIdentity names the signer, agent, chain, contracts and mesh peer id."""
        identity = await api.stub.GetIdentity(pb.GetIdentityRequest())
        assert identity.signer == api.world.node.address
        assert identity.registered
        assert identity.agent_id == api.world.agent_id
        assert identity.chain_id == 31337
        assert identity.settlement == api.world.settlement.address
        assert identity.peer_id == PEER_ID
        assert identity.version == __version__

    async def test_list_receipts_in_pages_and_get_one(self, api: Api) -> None:
        """ListReceipts pages through every receipt oldest first; GetReceipt finds one."""
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await api.stub.ListReceipts(
                pb.ListReceiptsRequest(page_size=2, page_token=token)
            )
            pages += 1
            seen.extend(r.receipt_hash for r in page.receipts)
            token = page.next_page_token
            if not token:
                break
        assert seen == ["0x" + h.hex() for h in api.hashes]
        assert pages == 3
        record = await api.stub.GetReceipt(pb.GetReceiptRequest(receipt_hash=seen[1]))
        assert (record.charge, record.refund, record.value) == ("200", "800", "1000")
        assert record.payment_state == "chargeable"
        assert [(c.agent_id, c.amount) for c in record.credits] == [(api.world.agent_id, "200")]

    async def test_refusals_carry_grpc_status_codes(self, api: Api) -> None:
        """An unknown receipt is NOT_FOUND; a malformed hash or page size INVALID_ARGUMENT."""
        with pytest.raises(aio.AioRpcError) as missing:
            await api.stub.GetReceipt(pb.GetReceiptRequest(receipt_hash="0x" + "00" * 32))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(aio.AioRpcError) as bad:
            await api.stub.GetReceipt(pb.GetReceiptRequest(receipt_hash="0x12"))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "32 bytes" in (bad.value.details() or "")
        with pytest.raises(aio.AioRpcError) as big:
            await api.stub.ListReceipts(pb.ListReceiptsRequest(page_size=5000))
        assert big.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    async def test_stream_receives_a_new_receipt(self, api: Api) -> None:
        """StreamReceipts delivers a receipt stored after the stream's start, and
        none of the older ones."""
        stream = api.stub.StreamReceipts(pb.StreamReceiptsRequest(after=time.time()))
        _, new_hash = await asyncio.to_thread(
            api.world.pay, api.receipts, api.journal, payer(20), value=50, charge=42
        )
        record = await asyncio.wait_for(stream.read(), timeout=30)
        assert isinstance(record, pb.ReceiptRecord)
        assert record.receipt_hash == "0x" + new_hash.hex()
        assert record.charge == "42"
        stream.cancel()

    async def test_reconcile_then_status_and_balances(self, api: Api) -> None:
        """Reconcile settles the chargeable payments; the status and balances show it."""
        before = await api.stub.GetSettlementStatus(pb.GetSettlementStatusRequest())
        assert dict(before.payments) == {"chargeable": 5}
        result = await api.stub.Reconcile(pb.ReconcileRequest())
        assert result.ok
        assert result.settled == 5
        assert [b.state for b in result.batches] == ["confirmed"]
        status = await api.stub.GetSettlementStatus(pb.GetSettlementStatusRequest())
        assert dict(status.payments) == {"settled": 5}
        assert dict(status.batches) == {"confirmed": 1}
        assert status.last_batch.tx_hash == result.batches[0].tx_hash
        balances = await api.stub.GetBalances(pb.GetBalancesRequest())
        assert balances.credited == str(100 + 200 + 300 + 400 + 500)
        assert balances.acknowledged == balances.credited
        assert (balances.shortfall, balances.unsettled_charges) == ("0", "0")
        record = await api.stub.GetReceipt(
            pb.GetReceiptRequest(receipt_hash="0x" + api.hashes[0].hex())
        )
        assert record.payment_state == "settled"
        assert record.transaction == result.batches[0].tx_hash


async def test_loopback_tcp_port(anvil: Anvil, tmp_path: Path, ledger: Ledger) -> None:
    """With `[operator] listen = "127.0.0.1:0"` the API serves on a free loopback port."""
    world = await asyncio.to_thread(make_world, anvil, tmp_path / "node")
    address = resolve_listen("127.0.0.1:0", world.folder)
    server, _, _ = await _serve(world, address, ledger)
    try:
        assert server.port
        async with aio.insecure_channel(server.address) as channel:
            status = await pb_grpc.OperatorStub(channel).GetSettlementStatus(
                pb.GetSettlementStatusRequest()
            )
        assert dict(status.payments) == {}
    finally:
        await server.stop(0)


def test_receipts_cli_lists_the_ledger(anvil: Anvil, tmp_path: Path, ledger: Ledger) -> None:
    """`mesh-x402 receipts --json` prints the same records as the API, from the ledger."""
    world = make_world(anvil, tmp_path / "node")
    journal, receipts = ledger(world.state_dir)
    world.fund(payer(21))
    _, receipt_hash = world.pay(receipts, journal, payer(21), value=900, charge=300)
    command = [sys.executable, "-m", "mesh_x402", "receipts", "--config", str(world.config_path)]
    shown = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
    (row,) = json.loads(shown.stdout)
    assert row["receiptHash"] == "0x" + receipt_hash.hex()
    assert (row["charge"], row["refund"], row["paymentState"]) == ("300", "600", "chargeable")
    table = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "chargeable" in table.stdout
    bad = subprocess.run([*command, "--limit", "0"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "--limit" in bad.stderr


async def test_without_a_chain_balances_and_reconcile_are_refused(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A node with no chain configured still serves its ledger; balances and
    reconciliation answer FAILED_PRECONDITION naming why."""
    journal, receipts = ledger(tmp_path / "state")
    service = OperatorService(
        identity=NodeIdentity("0x" + "11" * 20, None, 31337, "", "", "", __version__),
        journal=journal,
        receipts=receipts,
        reconciler=None,
    )
    with tempfile.TemporaryDirectory(prefix="op-") as short:
        server = OperatorServer(service, f"unix:{short}/operator.sock")
        await server.start()
        try:
            async with aio.insecure_channel(server.address) as channel:
                stub = pb_grpc.OperatorStub(channel)
                identity = await stub.GetIdentity(pb.GetIdentityRequest())
                listed = await stub.ListReceipts(pb.ListReceiptsRequest())
                with pytest.raises(aio.AioRpcError) as balances:
                    await stub.GetBalances(pb.GetBalancesRequest())
                with pytest.raises(aio.AioRpcError) as reconcile:
                    await stub.Reconcile(pb.ReconcileRequest())
        finally:
            await server.stop(0)
            journal.close()
    assert not identity.registered
    assert list(listed.receipts) == []
    for refused in (balances.value, reconcile.value):
        assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "no chain configured" in (refused.details() or "")


async def test_the_runtime_shares_the_gate_journal_and_leaves_it_open(tmp_path: Path) -> None:
    """`serve` hands the gate's journal to the settlement runtime (one connection,
    so the reconciler's writes never make SQLite's busy handler sleep on the
    gate's event loop): the operator API serves what the gate journalled, and
    closing the runtime leaves the gate its journal."""
    with tempfile.TemporaryDirectory(prefix="op-") as short:
        config = NodeConfig(
            path=tmp_path / "node.toml", operator=OperatorConfig(listen=f"unix:{short}/op.sock")
        )
        journal = Journal.in_state_dir(config.state_path)
        payment = NewPayment(
            receipt_id="r1", request_id="q1", payer="0x" + "aa" * 20, nonce="0x" + "01" * 32,
            value=100, valid_after=0, valid_before=2_000_000_000, signature="0x" + "11" * 65,
            network="eip155:31337", asset="0x" + "bb" * 20, pay_to="0x" + "cc" * 20, model="m",
            x402_version=2,
        )  # fmt: skip
        journal.claim(payment, spendable=None)
        runtime = SettlementRuntime(
            config, NodeKey(b"\x01" * 32), view=None, private=lambda: False, journal=journal
        )
        await runtime.start()
        try:
            async with aio.insecure_channel(f"unix:{short}/op.sock") as channel:
                stub = pb_grpc.OperatorStub(channel)
                status = await stub.GetSettlementStatus(pb.GetSettlementStatusRequest())
        finally:
            await runtime.aclose()
        assert journal.get("r1") is not None, "the shared journal is still open"
        journal.close()
    assert status.payments["accepted"] == 1
