"""The reconciler on a real anvil: real EIP-3009 payments, real MeshSettlement, real SQLite.

Each test deploys its own contracts on the session's anvil, registers this
node and two peers as ERC-8004 agents, and journals payments with signed
receipts through the public store APIs, as the gate leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import Credit, SettlementBinding, SettlementItem
from mesh_x402.chain.client import SignedTx
from mesh_x402.chain.eip712 import TransferAuthorization, sign_transfer_authorization
from mesh_x402.chain.reconciler import Backoff, Reconciler, settlement_item
from mesh_x402.commands._chain import connect_node
from mesh_x402.commands.reconcile import reconciler_for
from mesh_x402.core.receipts import Credit as ReceiptCredit
from mesh_x402.core.receipts import Receipt, ReceiptDomain, receipt_digest
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.settlements import BatchEntry, BatchState, SettlementStore
from settlement_kit import FUNDS, Ledger, SettleWorld, make_world, payer

pytestmark = pytest.mark.integration

FAST = Backoff(initial=0.05, maximum=0.2, attempts=None)


def _reconciler(world: SettleWorld, journal: Journal, url: str | None = None) -> Reconciler:
    node = connect_node(world.config_path)
    if url is not None:  # the same node, reached through another RPC URL (a proxy)
        from mesh_x402.chain.client import ChainClient

        client = ChainClient.connect(url, chain_id=31337)
        node = type(node)(
            config=node.config,
            client=client,
            account=node.account,
            token=type(node.token)(client, node.token.address),
            registry=type(node.registry)(client, node.registry.address),
            settlement=type(node.settlement)(client, node.settlement.address),
        )
    return reconciler_for(node, journal, backoff=FAST)


async def _poll(check: Callable[[], bool]) -> None:
    """Wait until `check()` (run in a thread: it may read the chain) is true."""
    while True:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.02)


def _settled_events(world: SettleWorld) -> Counter[str]:
    """How many PaymentSettled events each receipt hash has on chain."""
    logs = world.settlement.contract.events.PaymentSettled().get_logs(from_block=0)
    return Counter("0x" + bytes(log["args"]["receiptHash"]).hex() for log in logs)


def _event_tx(world: SettleWorld) -> dict[str, str]:
    logs = world.settlement.contract.events.PaymentSettled().get_logs(from_block=0)
    return {
        "0x" + bytes(log["args"]["receiptHash"]).hex(): log["transactionHash"].to_0x_hex()
        for log in logs
    }


class TestSettle:
    async def test_batches_credit_agents_and_refund_payers_as_receipts_say(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """7 payments in batches of 3: every one settled once; credits per agentId and
        refunds per payer on chain equal the receipts' figures."""
        world = make_world(anvil, tmp_path / "node", batch_size=3)
        journal, receipts = ledger(world.state_dir)
        alice, bob = payer(1), payer(2)
        world.fund(alice)
        world.fund(bob)
        peer_a, peer_b = world.peers
        plans: list[tuple[LocalAccount, int, int, list[tuple[int, int]]]] = [
            (alice, 10_000, 10_000, [(world.agent_id, 10_000)]),
            (alice, 10_000, 6_000, [(world.agent_id, 600), (peer_a, 5_400)]),
            (bob, 20_000, 9_000, [(world.agent_id, 900), (peer_a, 4_050), (peer_b, 4_050)]),
            (bob, 5_000, 0, []),
            (alice, 7_777, 7_000, [(world.agent_id, 700), (peer_b, 6_300)]),
            (bob, 1, 1, [(peer_a, 1)]),
            (alice, 3_000, 2_999, [(world.agent_id, 2_999)]),
        ]
        hashes = {}
        for who, value, charge, credits in plans:
            pid, h = world.pay(receipts, journal, who, value=value, charge=charge, credits=credits)
            hashes[pid] = h

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert report.settled == 7
        assert [b.state for b in report.batches] == ["confirmed"] * 3
        assert journal.count(PaymentState.SETTLED) == 7
        expected: Counter[int] = Counter()
        for _, _, _, credits in plans:
            for agent, amount in credits:
                expected[agent] += amount
        for agent in (world.agent_id, peer_a, peer_b):
            assert world.settlement.balance_of(agent) == expected[agent]
        charged = Counter[str]()
        for who, _, charge, _ in plans:
            charged[who.address] += charge
        for who in (alice, bob):
            assert world.token.balance_of(who.address) == FUNDS - charged[who.address]
        events = _settled_events(world)
        tx_of = _event_tx(world)
        for pid, h in hashes.items():
            key = "0x" + h.hex()
            assert events[key] == 1
            record = journal.get(pid)
            assert record is not None
            assert record.transaction == tx_of[key]
        assert report.credit is not None
        assert report.credit.acknowledged == expected[world.agent_id]
        assert report.credit.on_chain == expected[world.agent_id]
        assert report.credit.shortfall == 0
        again = await _reconciler(world, journal).run_once()
        assert again.ok
        assert again.settled == 0
        assert again.batches == []

    async def test_refused_payments_are_failed_with_reasons_and_others_settle(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """An expired authorization, a payer short of funds, an unknown agent, a forged
        and a malformed signature fail with their reasons; the good payment in the
        same batch settles."""
        world = make_world(anvil, tmp_path / "node", batch_size=10)
        journal, receipts = ledger(world.state_dir)
        rich, poor = payer(3), payer(4)
        world.fund(rich)
        world.fund(poor, 10)
        good, _ = world.pay(receipts, journal, rich, value=100, charge=100)
        expired, _ = world.pay(receipts, journal, rich, value=100, charge=50, valid_before=1000)
        short, _ = world.pay(receipts, journal, poor, value=100, charge=100)
        unknown, _ = world.pay(
            receipts, journal, rich, value=100, charge=100, credits=[(world.agent_id + 99, 100)]
        )
        forged, _ = world.pay(
            receipts, journal, rich, value=100, charge=100, signature="0x" + "1b" * 65
        )
        malformed, _ = world.pay(
            receipts, journal, rich, value=100, charge=100, signature="0x" + "1b" * 64
        )

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert report.failed == {
            "authorization_expired": 1,
            "payer_insufficient_funds": 1,
            "unknown_agent": 1,
            "authorization_failed": 1,
            "malformed: authorization signature is 64 bytes, not 65": 1,
        }
        reasons = {
            pid: journal.get(pid) for pid in (good, expired, short, unknown, forged, malformed)
        }
        assert reasons[good] is not None
        assert reasons[good].state is PaymentState.SETTLED
        for pid, reason in (
            (expired, "authorization_expired"),
            (short, "payer_insufficient_funds"),
            (unknown, "unknown_agent"),
            (forged, "authorization_failed"),
            (malformed, "malformed: authorization signature is 64 bytes, not 65"),
        ):
            record = reasons[pid]
            assert record is not None
            assert (record.state, record.reason) == (PaymentState.FAILED, reason)
        assert world.settlement.balance_of(world.agent_id) == 100
        assert world.token.balance_of(poor.address) == 10
        # Failed payments will never pay: not pending, not a shortfall.
        assert report.credit is not None
        assert (report.credit.acknowledged, report.credit.pending) == (100, 0)
        assert report.credit.shortfall == 0

    async def test_not_entry_signer_waits_without_spending_gas(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """A receipt naming an entry agent this key may not settle for is retried
        later (the operator can fix the registration), costs no transaction, and
        does not hold up the payments behind it."""
        world = make_world(anvil, tmp_path / "node", batch_size=1)
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(10))
        foreign, _ = world.pay(
            receipts, journal, payer(10), value=100, charge=100, entry=world.peers[0]
        )
        own, _ = world.pay(receipts, journal, payer(10), value=100, charge=100)
        sent_before = world.client.w3.eth.get_transaction_count(world.node.address)

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert report.retrying == {"not_entry_signer": 1}
        assert report.settled == 1
        assert journal.get(foreign).state is PaymentState.CHARGEABLE  # type: ignore[union-attr]
        assert journal.get(own).state is PaymentState.SETTLED  # type: ignore[union-attr]
        sent_after = world.client.w3.eth.get_transaction_count(world.node.address)
        assert sent_after == sent_before + 1  # the one batch with the node's own payment

    async def test_waits_for_confirmations_and_keeps_payments_chargeable_meanwhile(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """With `chain.confirmations = 2` the batch stays `sent` and its payments
        chargeable until a second block is mined on top of it."""
        world = make_world(anvil, tmp_path / "node", confirmations=2)
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(11))
        pid, _ = world.pay(receipts, journal, payer(11), value=100, charge=60)
        reconciler = await asyncio.to_thread(_reconciler, world, journal)
        running = asyncio.create_task(reconciler.run_once())
        store = SettlementStore(journal)
        await _poll(lambda: bool(store.open_batches()))
        batch = store.open_batches()[0]
        await _poll(lambda: world.client.receipt_of(batch.tx_hash) is not None)
        assert not running.done()
        assert journal.get(pid).state is PaymentState.CHARGEABLE  # type: ignore[union-attr]

        await asyncio.to_thread(world.client.w3.provider.make_request, "evm_mine", [])  # type: ignore[arg-type]
        report = await running

        assert report.ok, report.error
        assert report.settled == 1
        assert journal.get(pid).state is PaymentState.SETTLED  # type: ignore[union-attr]

    async def test_authorization_executed_by_someone_else_fails_and_its_money_stays(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """Someone executes a payment's authorization on the token before this node
        settles it: the payment fails `authorization_used_or_canceled`, nobody is
        credited, the money stays in the contract as surplus. A peer's PaymentSettled
        naming the same receipt hash on its own payment does not make it settled."""
        world = make_world(anvil, tmp_path / "node", batch_size=10)
        journal, receipts = ledger(world.state_dir)
        victim, decoy_payer = payer(15), payer(16)
        world.fund(victim)
        world.fund(decoy_payer)
        front_run, h = world.pay(receipts, journal, victim, value=500, charge=400)
        good, _ = world.pay(receipts, journal, victim, value=300, charge=300)
        (stolen,) = [
            settlement_item(r, world.settlement.address)
            for r in receipts.settleable(10)
            if r.payment_id == front_run
        ]
        auth, sig = stolen.authorization, stolen.signature
        world.client.transact(
            dev_account(7),
            world.token.contract.functions.transferWithAuthorization(
                victim.address, auth.to, auth.value, auth.valid_after, auth.valid_before,
                auth.nonce, sig.v, sig.r, sig.s,
            ),
            "front-run",
        )  # fmt: skip
        decoy_auth = TransferAuthorization(
            decoy_payer.address, world.settlement.address, 50, 0, 2**40, os.urandom(32)
        )
        decoy_sig = sign_transfer_authorization(
            bytes(decoy_payer.key), decoy_auth, token_name=world.domain.name,
            token_version=world.domain.version, chain_id=31337, token=world.token.address,
        )  # fmt: skip
        decoy = SettlementItem(
            decoy_auth, decoy_sig, world.peers[0], h, [Credit(world.peers[0], 50)]
        )
        world.settlement.settle(dev_account(8), [decoy])

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert report.failed == {"authorization_used_or_canceled": 1}
        assert report.settled == 1
        record = journal.get(front_run)
        assert record is not None
        assert (record.state, record.reason) == (
            PaymentState.FAILED,
            "authorization_used_or_canceled",
        )
        assert journal.get(good).state is PaymentState.SETTLED  # type: ignore[union-attr]
        assert world.settlement.balance_of(world.agent_id) == 300
        assert world.token.balance_of(victim.address) == FUNDS - 500 - 300
        held = world.token.balance_of(world.settlement.address)
        liabilities = world.settlement.contract.functions.liabilities().call()
        assert held - liabilities == 500
        assert report.credit is not None
        assert (report.credit.acknowledged, report.credit.pending) == (300, 0)

    async def test_payment_settled_by_another_process_is_recorded_with_its_transaction(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """The node's key settled a payment outside this journal (another process):
        the contract answers NONCE_USED, its PaymentSettled log names the payment's
        payer and nonce, so the journal records it settled in that transaction, and no
        gas is spent on it again."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(17))
        pid, _ = world.pay(receipts, journal, payer(17), value=500, charge=450)
        item = settlement_item(receipts.settleable(10)[0], world.settlement.address)
        done = world.settlement.settle(world.node, [item])

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert report.settled == 1
        assert report.batches == []
        record = journal.get(pid)
        assert record is not None
        assert (record.state, record.transaction) == (PaymentState.SETTLED, done.tx_hash)
        assert world.settlement.balance_of(world.agent_id) == 450

    async def test_shortfall_when_a_peer_settles_less_than_the_acknowledged_receipt(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """This node acknowledged a peer's receipt crediting it 300, but the peer
        settled that payment on chain crediting it 100: the report names the 200
        shortfall. A receipt not yet settled counts as pending, not as missing.
        A later check asks the chain again about the pending receipt only."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        who, peer_key = payer(12), dev_account(8)
        world.fund(who)
        peer_agent = world.peers[0]
        domain = ReceiptDomain(31337, world.settlement.address)
        token_name, token_version = world.domain.name, world.domain.version

        def peer_payment(credit_me: int) -> tuple[SettlementItem, Receipt, bytes]:
            nonce = os.urandom(32)
            auth = TransferAuthorization(
                who.address, world.settlement.address, 1_000, 0, 2**40, nonce
            )
            signature = sign_transfer_authorization(
                bytes(who.key), auth, token_name=token_name, token_version=token_version,
                chain_id=31337, token=world.token.address,
            )  # fmt: skip
            receipt = Receipt(
                payer=who.address, nonce=nonce, value=1_000, request_id="r", model="m",
                prompt_tokens=1, completion_tokens=1, price_version=1, timestamp=1,
                charge=1_000, refund=0, entry_agent_id=peer_agent,
                credits=tuple(sorted([ReceiptCredit(world.agent_id, credit_me),
                                      ReceiptCredit(peer_agent, 1_000 - credit_me)],
                                     key=lambda c: c.agent_id)),
                policy="vram-proportional",
            )  # fmt: skip
            digest = receipt_digest(receipt, domain)
            item = SettlementItem(auth, signature, peer_agent, digest, [], 0)
            return item, receipt, digest

        settled_item, acked, acked_hash = peer_payment(300)
        _, pending, pending_hash = peer_payment(50)
        for receipt, digest in ((acked, acked_hash), (pending, pending_hash)):
            receipts.add_receipt(
                receipt, digest, b"\x01" * 65,
                own_ack=(world.agent_id, world.node.address, b"\x02" * 65),
            )  # fmt: skip
        # The peer settles the acknowledged payment with another split than the receipt's.
        cheated = SettlementItem(
            settled_item.authorization, settled_item.signature, peer_agent, acked_hash,
            [Credit(world.agent_id, 100), Credit(peer_agent, 900)], 0,
        )  # fmt: skip
        world.settlement.settle(peer_key, [cheated])

        asked: list[bytes] = []
        settlement_of = SettlementBinding.settlement_of

        def counted(binding: SettlementBinding, receipt_hash: bytes, *args: Any) -> str | None:
            asked.append(receipt_hash)
            return settlement_of(binding, receipt_hash, *args)

        monkeypatch.setattr(SettlementBinding, "settlement_of", counted)
        reconciler = _reconciler(world, journal)
        report = await reconciler.run_once()

        assert report.credit is not None
        assert report.credit.on_chain == 100
        assert report.credit.acknowledged == 300
        assert report.credit.pending == 50
        assert report.credit.shortfall == 200
        assert report.to_json()["credit"]["shortfall"] == "200"
        assert sorted(asked) == sorted([acked_hash, pending_hash])
        asked.clear()
        again = await asyncio.to_thread(reconciler.check_credits)
        assert again == report.credit
        assert asked == [pending_hash]


class TestPacing:
    async def test_a_pass_pauses_between_batches_while_the_gate_is_busy(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """5 payments in batches of 2: the gate turns busy once the pass has begun;
        the pass stops after the batch under way and goes on once the gate is quiet."""
        world = make_world(anvil, tmp_path / "node", batch_size=2)
        journal, receipts = ledger(world.state_dir)
        alice = payer(3)
        world.fund(alice)
        for _ in range(5):
            world.pay(receipts, journal, alice, value=1_000, charge=900)
        asked = 0
        quiet = threading.Event()

        def idle_seconds() -> float:  # quiet for the pass's start, then busy until told
            nonlocal asked
            asked += 1
            return 10.0 if asked == 1 or quiet.is_set() else 0.0

        loop = asyncio.ensure_future(
            _reconciler(world, journal).run_forever(0.05, idle_seconds=idle_seconds, idle_wait=60)
        )
        try:
            await _poll(lambda: journal.count(PaymentState.SETTLED) == 2)
            await _poll(lambda: asked >= 3)  # it asked before the next batch, and again
            assert journal.count(PaymentState.SETTLED) == 2
            quiet.set()
            await _poll(lambda: journal.count(PaymentState.SETTLED) == 5)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        assert set(_settled_events(world).values()) == {1}


class TestCrashRecovery:
    async def test_batch_recorded_but_never_broadcast_is_sent_again_byte_for_byte(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """A process killed between committing a batch and broadcasting it: the next
        pass broadcasts the very same transaction (same hash, same nonce)."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(5))
        pid, h = world.pay(receipts, journal, payer(5), value=500, charge=400)
        reconciler = _reconciler(world, journal)
        item = receipts.settleable(10)

        node = connect_node(world.config_path)
        signed = node.client.prepare(
            node.account,
            node.settlement.settle_function([settlement_item(item[0], world.settlement.address)]),
            "settle",
        )
        entry = BatchEntry(pid, "0x" + h.hex(), item[0].payer, item[0].nonce, 500, 400)
        batch_id = SettlementStore(journal).record_sent(signed, [entry], now=1.0)
        assert journal.get(pid).state is PaymentState.CHARGEABLE  # type: ignore[union-attr]

        report = await reconciler.run_once()

        assert report.ok
        assert report.resumed == 1
        assert report.settled == 1
        batch = SettlementStore(journal).get(batch_id)
        assert batch is not None
        assert batch.state is BatchState.CONFIRMED
        assert _event_tx(world)["0x" + h.hex()] == signed.tx_hash
        assert journal.get(pid).transaction == signed.tx_hash  # type: ignore[union-attr]

    async def test_nonce_taken_by_another_transaction_returns_items_to_the_pool(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """The recorded batch's nonce went to another transaction: the contract says the
        payment is not settled, so it goes into a new batch and settles once."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(6))
        pid, h = world.pay(receipts, journal, payer(6), value=500, charge=500)

        node = connect_node(world.config_path)
        item = receipts.settleable(10)[0]
        signed = node.client.prepare(
            node.account,
            node.settlement.settle_function([settlement_item(item, world.settlement.address)]),
            "settle",
        )
        SettlementStore(journal).record_sent(
            signed, [BatchEntry(pid, "0x" + h.hex(), item.payer, item.nonce, 500, 500)], now=1.0
        )
        # Something else (an operator's wallet) uses that nonce first.
        w3 = world.client.w3
        other = node.account.sign_transaction(
            {
                "to": node.account.address,
                "value": 0,
                "gas": 21_000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
                "nonce": signed.nonce,
                "chainId": 31337,
            }
        )
        w3.eth.send_raw_transaction(other.raw_transaction)

        report = await _reconciler(world, journal).run_once()

        assert report.ok, report.error
        assert [b.state for b in report.batches] == ["failed", "confirmed"]
        assert report.settled == 1
        assert _settled_events(world)["0x" + h.hex()] == 1
        record = journal.get(pid)
        assert record is not None
        assert record.state is PaymentState.SETTLED
        assert record.transaction == _event_tx(world)["0x" + h.hex()] != signed.tx_hash

    async def test_reverted_batch_returns_payments_and_is_not_resent_in_the_same_pass(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """A recorded batch that reverts when mined (here: out of gas) moves nothing:
        its payments return to the pool, wait for the next pass, then settle once."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(14))
        pid, h = world.pay(receipts, journal, payer(14), value=500, charge=500)
        node = connect_node(world.config_path)
        item = receipts.settleable(10)[0]
        fn = node.settlement.settle_function([settlement_item(item, world.settlement.address)])
        tx = fn.transaction(
            {
                "from": node.account.address,
                "gas": 60_000,  # far too little for a settle: reverts when mined
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
                "nonce": world.client.mined_nonce(node.account.address),
                "chainId": 31337,
            }
        )
        signed = node.account.sign_transaction(tx)
        SettlementStore(journal).record_sent(
            SignedTx(
                node.account.address, tx["nonce"], signed.hash.to_0x_hex(), signed.raw_transaction
            ),
            [BatchEntry(pid, "0x" + h.hex(), item.payer, item.nonce, 500, 500)],
            now=1.0,
        )

        first = await _reconciler(world, journal).run_once()

        assert first.ok, first.error
        assert [(b.state, b.settled) for b in first.batches] == [("failed", 0)]
        assert journal.get(pid).state is PaymentState.CHARGEABLE  # type: ignore[union-attr]
        assert _settled_events(world)["0x" + h.hex()] == 0
        second = await _reconciler(world, journal).run_once()
        assert second.settled == 1
        assert _settled_events(world)["0x" + h.hex()] == 1


class _FlakyRpc:
    """A TCP relay to anvil that can stop answering (connections cut, as a dead RPC)."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.down = False
        self.cut_after_send = False
        self.refused = 0
        self.refused_enough = asyncio.Event()
        self._conns: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def go_down(self) -> None:
        self.down = True
        for writer in list(self._conns):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            if self.refused >= 3:
                self.refused_enough.set()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._conns.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                    if watch and self.cut_after_send and b"eth_sendRawTransaction" in data:
                        # The transaction reached the node; the answer never comes back.
                        await asyncio.sleep(0)
                        self.go_down()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._conns.difference_update({writer, up_writer})

    async def stop(self) -> None:
        self.go_down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def flaky(anvil: Anvil) -> AsyncIterator[_FlakyRpc]:
    assert anvil.port is not None
    relay = _FlakyRpc(anvil.port)
    relay.url = await relay.start()
    yield relay
    await relay.stop()


class TestRpcDown:
    async def test_rpc_dies_after_broadcast_then_returns_nothing_lost(
        self, anvil: Anvil, tmp_path: Path, flaky: _FlakyRpc, ledger: Ledger
    ) -> None:
        """The RPC dies right after the settle transaction reached the node: the pass
        retries with back-off, then resolves the batch from its receipt once the
        RPC answers again; every payment settled once."""
        world = make_world(anvil, tmp_path / "node", batch_size=5)
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(7))
        hashes = [
            world.pay(receipts, journal, payer(7), value=300, charge=200)[1] for _ in range(4)
        ]
        # Connecting is synchronous: off the loop, which runs the relay.
        reconciler = await asyncio.to_thread(_reconciler, world, journal, flaky.url)
        flaky.cut_after_send = True

        running = asyncio.create_task(reconciler.run_once())
        await flaky.refused_enough.wait()
        assert not running.done()
        assert len(SettlementStore(journal).open_batches()) == 1
        assert journal.count(PaymentState.CHARGEABLE) == 4
        flaky.cut_after_send = False
        flaky.down = False
        report = await running

        assert report.ok, report.error
        assert report.attempts > 1
        assert report.settled == 4
        assert journal.count(PaymentState.SETTLED) == 4
        events = _settled_events(world)
        assert all(events["0x" + h.hex()] == 1 for h in hashes)
        assert world.settlement.balance_of(world.agent_id) == 800

    async def test_rpc_down_from_the_start_gives_up_with_an_error_and_keeps_payments(
        self, anvil: Anvil, tmp_path: Path, flaky: _FlakyRpc, ledger: Ledger
    ) -> None:
        """With a bounded back-off, an RPC that never answers ends the pass with an
        error naming it; the payments stay chargeable for the next pass."""
        world = make_world(anvil, tmp_path / "node")
        journal, receipts = ledger(world.state_dir)
        world.fund(payer(8))
        world.pay(receipts, journal, payer(8), value=300, charge=200)
        # Connecting is synchronous: off the loop, which runs the relay.
        reconciler = await asyncio.to_thread(_reconciler, world, journal, flaky.url)
        flaky.go_down()
        reconciler._backoff = Backoff(initial=0.01, maximum=0.02, attempts=3)

        report = await reconciler.run_once()

        assert not report.ok
        assert report.attempts == 3
        assert "does not answer" in (report.error or "")
        assert journal.count(PaymentState.CHARGEABLE) == 1
        assert SettlementStore(journal).open_batches() == []


def _fired(trigger: str, journal: Journal, late: bool, settled_target: int) -> bool:
    """Whether the kill trigger of this run has come."""
    if trigger == "sent":
        return bool(SettlementStore(journal).open_batches())
    if trigger == "settled":
        return journal.count(PaymentState.SETTLED) >= settled_target
    return late


class TestSigkill:
    def test_killed_reconcile_processes_settle_every_payment_exactly_once(
        self, anvil: Anvil, tmp_path: Path, ledger: Ledger
    ) -> None:
        """`mesh-x402 reconcile --once` SIGKILLed at random instants, 10 times, with new
        payments arriving in between; a last run finishes. Every payment is settled
        exactly once: one PaymentSettled per receipt on chain, and the journal names
        that transaction."""
        world = make_world(anvil, tmp_path / "node", batch_size=2)
        journal, receipts = ledger(world.state_dir)
        who = payer(9)
        world.fund(who)
        hashes: dict[str, bytes] = {}
        rng = random.Random(5)
        command = [
            sys.executable, "-m", "mesh_x402", "reconcile",
            "--config", str(world.config_path), "--once", "--json",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        store = SettlementStore(journal)
        kills = runs = 0
        in_flight = 0  # kills that left a batch recorded but not confirmed
        while kills < 10 and runs < 30:
            for _ in range(4):
                pid, h = world.pay(receipts, journal, who, value=1_000, charge=700)
                hashes[pid] = h
            runs += 1
            settled = journal.count(PaymentState.SETTLED)
            # Kill at a random instant, or right as a batch is committed, or right
            # after some payments settled: the windows a crash must survive.
            trigger = rng.choice(["time", "sent", "settled"])
            started = time.monotonic()
            delay, progress = rng.uniform(0.5, 3.0), rng.randint(1, 3)
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while process.poll() is None:
                if _fired(trigger, journal, time.monotonic() - started > delay, settled + progress):
                    process.kill()
                    process.wait()
                    kills += 1
                    in_flight += bool(store.open_batches())
                    break
                time.sleep(0.002)
        assert kills == 10
        assert in_flight > 0, "no kill landed between committing and confirming a batch"
        final = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=120
        )
        assert final.returncode == 0, final.stderr
        assert json.loads(final.stdout)["ok"] is True

        events = _settled_events(world)
        tx_of = _event_tx(world)
        for pid, h in hashes.items():
            key = "0x" + h.hex()
            assert events[key] == 1, f"payment {pid} settled {events[key]} times"
            record = journal.get(pid)
            assert record is not None
            assert record.state is PaymentState.SETTLED
            assert record.transaction == tx_of[key]
        assert sum(events.values()) == len(hashes)
        assert world.settlement.balance_of(world.agent_id) == 700 * len(hashes)
        assert world.token.balance_of(who.address) == FUNDS - 700 * len(hashes)
        assert SettlementStore(journal).open_batches() == []


def test_reconcile_command_exits_1_naming_a_dead_rpc(
    anvil: Anvil, tmp_path: Path, ledger: Ledger
) -> None:
    """`mesh-x402 reconcile --once` against an RPC that does not answer: exit 1 and
    a one-line reason naming the endpoint; the ledger is untouched."""
    world = make_world(anvil, tmp_path / "node")
    journal, receipts = ledger(world.state_dir)
    world.fund(payer(13))
    world.pay(receipts, journal, payer(13), value=100, charge=100)
    text = world.config_path.read_text(encoding="utf-8")
    world.config_path.write_text(text.replace(world.url, "http://127.0.0.1:9"), encoding="utf-8")
    command = [
        sys.executable, "-m", "mesh_x402", "reconcile",
        "--config", str(world.config_path), "--once",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 1
    assert "rpc http://127.0.0.1:9 does not answer" in result.stderr
    assert journal.count(PaymentState.CHARGEABLE) == 1
