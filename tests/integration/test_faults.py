"""Faults: SIGKILLs while clients pay and the reconciler settles, a chain RPC that goes
away and comes back, a respawn in the middle of a streamed answer.

Everything is real: anvil with fresh contracts, `mesh-x402 serve` under the
host double (which SIGKILLs and respawns it as mesh-llm does), separate
`mesh-x402 reconcile` processes, the fake mesh-llm API, SQLite. The checks
are DESIGN.md's invariant 1: every payment a client was told was accepted
ends settled exactly once on chain, or failed/released with a reason, and
the chain and the journal agree.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fault_kit import (
    BODY,
    PaidNode,
    Payment,
    Reconciling,
    assert_no_secrets,
    free_port,
    paying_node,
    until,
)
from mesh_x402.chain.anvil import Anvil
from mesh_x402.devnet.fake_upstream import FakeModel
from mesh_x402.store.journal import PaymentState
from mesh_x402.store.receipts import ReceiptStore
from settlement_kit import payer

pytestmark = pytest.mark.integration

CI_KILLS = 20
LONG_KILLS = 200


async def _pay_until(
    node: PaidNode, who: LocalAccount, stop: asyncio.Event, sent: list[Payment]
) -> None:
    """Pay again and again (a fresh authorization each time) until told to stop."""
    async with httpx.AsyncClient(timeout=30) as client:
        requirements = await node.requirements(client)
        while not stop.is_set():
            header, signature = node.sign(who, requirements)
            payment = await node.pay_once(client, header, signature)
            sent.append(payment)
            # A refusal (the gate's balance cache is cold after a respawn) or a dead
            # gate is answered at once: pause instead of spinning.
            await asyncio.sleep(0 if payment.accepted else 0.05)


async def _drain(node: PaidNode, settler: Reconciling) -> None:
    """Run reconcile passes until no payment waits for the chain and no batch is open."""

    def quiet() -> bool:
        journal = node.journal()
        try:
            waiting = journal.count(PaymentState.CHARGEABLE) + journal.count(PaymentState.ACCEPTED)
            with journal.connection() as db:
                open_batches = db.execute(
                    "SELECT COUNT(*) FROM batches WHERE state = 'sent'"
                ).fetchone()[0]
            return waiting == 0 and open_batches == 0
        finally:
            journal.close()

    for _ in range(20):
        if await asyncio.to_thread(quiet):
            return
        await settler.once()
    raise AssertionError("payments still wait for the chain after 20 reconcile passes")


def _check_ledger_against_chain(node: PaidNode, accepted: list[Payment]) -> None:
    """Invariant 1 and 2, from the client's side and the chain's."""
    world = node.world
    states = node.states(p.receipt_id for p in accepted if p.receipt_id is not None)
    for rid, (state, reason) in states.items():
        assert state in (PaymentState.SETTLED, PaymentState.FAILED), (rid, state)
        if state is PaymentState.FAILED:
            assert reason, f"{rid} failed without a reason"
    journal = node.journal()
    receipts = ReceiptStore(journal)
    try:
        with journal.connection() as db:
            rows = db.execute(
                "SELECT receipt_id, payer, nonce, state, charge, value, tx FROM payments"
            ).fetchall()
        hashes = {}
        for rid, *_ in rows:
            stored = receipts.for_payment(rid)
            hashes[rid] = None if stored is None else stored.receipt_hash
    finally:
        journal.close()
    # Every PaymentSettled event on chain, by receipt hash: exactly one per settled payment.
    events: dict[bytes, list[str]] = {}
    for event in world.settlement.contract.events.PaymentSettled().get_logs(from_block=0):
        tx = event["transactionHash"].to_0x_hex()
        events.setdefault(bytes(event["args"]["receiptHash"]), []).append(tx)
    settled_total = 0
    for rid, payer_address, nonce, state, charge, value, tx_hash in rows:
        if state == PaymentState.SETTLED.value:
            receipt_hash = hashes[rid]
            assert receipt_hash is not None, f"settled payment {rid} has no receipt"
            assert events.get(receipt_hash) == [tx_hash], (rid, events.get(receipt_hash), tx_hash)
        elif hashes[rid] is not None:
            assert hashes[rid] not in events, f"chain settled {rid}, the journal has it {state}"
        raw_nonce = bytes.fromhex(nonce[2:])
        on_chain = (
            None
            if hashes[rid] is None
            else world.settlement.settlement_of(hashes[rid], payer_address, raw_nonce)
        )
        used = world.token.authorization_state(payer_address, raw_nonce)
        if state == PaymentState.SETTLED.value:
            assert on_chain == tx_hash, f"journal says settled in {tx_hash}, chain {on_chain}"
            assert 0 < charge <= value
            settled_total += charge
        else:
            assert on_chain is None, f"chain credited a payment the journal has as {state}"
            assert not used, f"a {state} authorization was pulled from the payer: {nonce}"
    # Credited once each: the node's balance is exactly the settled charges (solo node),
    # and the contract holds no more than that (refunds went back).
    assert world.settlement.balance_of(world.agent_id) == settled_total
    assert world.token.balance_of(world.settlement.address) == settled_total


async def test_sigkills_while_paying_and_settling_lose_nothing(
    anvil: Anvil, tmp_path: Path, long_run: bool
) -> None:
    """The plugin and the reconciler are SIGKILLed at random instants while two clients
    pay; afterwards every accepted payment is settled once or failed with a reason, and
    the journal and the chain agree payment by payment and in total."""
    kills = LONG_KILLS if long_run else CI_KILLS
    rng = random.Random(7)
    async with paying_node(anvil, tmp_path, batch_size=3, interval=0.2) as (node, _):
        payers = [payer(70), payer(71)]
        for who in payers:
            await asyncio.to_thread(node.world.fund, who)
        settler = Reconciling(node.world.config_path, tmp_path / "reconcile.log")
        node.logs.append(tmp_path / "reconcile.log")
        await settler.start()
        stop = asyncio.Event()
        sent: list[Payment] = []
        clients = [asyncio.create_task(_pay_until(node, who, stop, sent)) for who in payers]
        try:
            await until(lambda: any(p.accepted for p in sent), "a first accepted payment")
            for n in range(kills):
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                if n % 3 == 2:
                    await settler.kill()
                    await settler.start()
                else:
                    spawned = node.host.spawn_count
                    await node.host.kill()
                    await node.host.wait_respawned(spawned)
            stop.set()
            await asyncio.gather(*clients)
        finally:
            stop.set()
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            await settler.kill()
        accepted = [p for p in sent if p.accepted]
        assert len(accepted) >= kills // 2, f"only {len(accepted)} payments got through"
        await _drain(node, settler)
        await asyncio.to_thread(_check_ledger_against_chain, node, accepted)
        journal = node.journal()
        try:
            assert journal.count(PaymentState.SETTLED) > 0
        finally:
            journal.close()
    secrets = [bytes(node.world.node.key).hex(), *(bytes(w.key).hex() for w in payers)]
    assert_no_secrets(node.logs, secrets + [p.header for p in sent] + [p.signature for p in sent])


class RpcProxy:
    """A 127.0.0.1 TCP proxy in front of anvil that can be taken down and brought back."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._links.add(up_writer)
        if self._server is None:  # went down while this connection was being opened
            writer.transport.abort()
            up_writer.transport.abort()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._links -= {writer, up_writer}

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def down(self) -> None:
        """Stop listening and cut every open connection (the RPC is gone)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        if server is not None:
            # From 3.12 on this waits for every connection to end: cut them first.
            await server.wait_closed()


@asynccontextmanager
async def _proxied(anvil: Anvil) -> AsyncIterator[RpcProxy]:
    proxy = RpcProxy(int(anvil.url.rsplit(":", 1)[1].rstrip("/")))
    await proxy.up()
    try:
        yield proxy
    finally:
        await proxy.down()


async def test_chain_rpc_away_and_back_settles_by_itself(anvil: Anvil, tmp_path: Path) -> None:
    """With the RPC down, the gate keeps taking payments (no chain call on the request
    path) and nothing is settled or lost; once it is back, the running reconciler
    settles all of them without being restarted."""
    async with _proxied(anvil) as proxy:
        async with paying_node(
            anvil, tmp_path, batch_size=2, interval=0.2, rpc=f"http://127.0.0.1:{proxy.port}"
        ) as (node, _):
            who = payer(72)
            await asyncio.to_thread(node.world.fund, who)
            settler = Reconciling(node.world.config_path, tmp_path / "reconcile.log")
            node.logs.append(tmp_path / "reconcile.log")
            await settler.start()
            try:
                async with httpx.AsyncClient(timeout=30) as client:
                    requirements = await node.requirements(client)
                    # The gate learns the payer's balance from the chain once.
                    first = await _accepted(node, client, who, requirements)
                    await proxy.down()
                    during = [await _accepted(node, client, who, requirements) for _ in range(5)]
                    await asyncio.sleep(1.0)  # several reconcile intervals with no chain
                    states = node.states(p.receipt_id for p in during if p.receipt_id)
                    assert set(states.values()) == {(PaymentState.CHARGEABLE, None)}, states
                    await proxy.up()
                    everything = [first, *during]
                    await until(
                        lambda: all(
                            state is PaymentState.SETTLED
                            for state, _ in node.states(
                                p.receipt_id for p in everything if p.receipt_id
                            ).values()
                        ),
                        "the payments taken while the chain was away to settle",
                    )
            finally:
                await settler.kill()
            await asyncio.to_thread(_check_ledger_against_chain, node, everything)
        assert_no_secrets(node.logs, [bytes(who.key).hex(), *(p.header for p in everything)])


async def _accepted(
    node: PaidNode, client: httpx.AsyncClient, who: LocalAccount, requirements: object
) -> Payment:
    """Pay until accepted (the first tries wait for the gate's balance cache)."""
    for _ in range(300):
        header, signature = node.sign(who, requirements)  # type: ignore[arg-type]
        payment = await node.pay_once(client, header, signature)
        if payment.accepted:
            return payment
        await asyncio.sleep(0.1)
    raise AssertionError(f"no payment accepted (last status {payment.status})")


async def test_respawn_mid_stream_does_not_charge_the_client(anvil: Anvil, tmp_path: Path) -> None:
    """The plugin is SIGKILLed while its streamed answer is held half way: the respawned
    plugin releases the payment (journal rule `release_interrupted`: usage unknown, the
    payer gets the benefit of the doubt), and it is never settled or pulled on chain."""
    held = FakeModel("fake-model", completion_tokens=24, chunks=6, hold_after_chunks=2)
    async with paying_node(anvil, tmp_path, models=[held]) as (node, upstream):
        who = payer(73)
        await asyncio.to_thread(node.world.fund, who)
        streamed = {**BODY, "stream": True}
        async with httpx.AsyncClient(timeout=30) as client:
            requirements = await node.requirements(client, streamed)
            header, receipt_id = "", None
            for _ in range(300):
                header, _ = node.sign(who, requirements)
                async with client.stream(
                    "POST",
                    f"{node.gateway}/v1/chat/completions",
                    json=streamed,
                    headers={"payment-signature": header},
                ) as response:
                    if response.status_code != 200:
                        await asyncio.sleep(0.1)
                        continue
                    lines = response.aiter_lines()
                    assert (await anext(lines)).startswith("data: ")
                    settle = json.loads(base64.b64decode(response.headers["payment-response"]))
                    receipt_id = settle["extra"]["receiptId"]
                    spawned = node.host.spawn_count
                    await node.host.kill()
                    with pytest.raises(httpx.TransportError):
                        async for _ in lines:
                            pass
                break
            assert receipt_id is not None
            upstream.release()
            await node.host.wait_respawned(spawned)
            await until(
                lambda: node.states([receipt_id])[receipt_id][0] is PaymentState.RELEASED,
                "the interrupted payment to be released",
            )
            assert node.states([receipt_id])[receipt_id] == (PaymentState.RELEASED, "interrupted")
            settler = Reconciling(node.world.config_path, tmp_path / "reconcile.log")
            assert await settler.once() == 0
            _check_ledger_against_chain(node, [])
            assert node.world.token.balance_of(who.address) == 10**9
    assert_no_secrets([*node.logs, tmp_path / "reconcile.log"], [bytes(who.key).hex(), header])
