"""`mesh-x402 serve` without mesh-llm (the gateway alone) still settles what it accepts.

Standalone there is no host and no peer: each paid exchange gets a signed
receipt crediting this node alone, and serve's own reconciler settles it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from fault_kit import PaidNode, _write_gateway, free_port, until
from mesh_x402.chain.anvil import Anvil
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.store.journal import PaymentState
from settlement_kit import make_world, payer

pytestmark = pytest.mark.integration


async def test_standalone_gateway_settles_its_payments(anvil: Anvil, tmp_path: Path) -> None:
    """A payment accepted on the standalone gateway ends settled on chain, credited
    in full to this node's agent, with the payer refunded the rest."""
    with FakeUpstream([FakeModel("fake-model", completion_tokens=8, chunks=2)]) as upstream:
        world = await asyncio.to_thread(make_world, anvil, tmp_path / "node", batch_size=2)
        port = free_port()
        _write_gateway(world, port, upstream.url, 0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_LLM_PLUGIN_")}
        log = tmp_path / "serve.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "mesh_x402", "serve", "--config", str(world.config_path)),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        node = PaidNode(world, None, f"http://127.0.0.1:{port}", world.domain, [log])  # type: ignore[arg-type]
        try:
            client_key = payer(90)
            await asyncio.to_thread(world.fund, client_key)
            before = await asyncio.to_thread(world.token.balance_of, client_key.address)
            async with httpx.AsyncClient(timeout=30) as client:
                requirements = await node.requirements(client)
                header, signature = node.sign(client_key, requirements)
                payment = await node.pay_once(client, header, signature)
            assert payment.accepted, payment
            receipt_id = payment.receipt_id
            assert receipt_id is not None
            await until(
                lambda: node.states([receipt_id])[receipt_id][0] is PaymentState.SETTLED,
                "the standalone node to settle its payment",
            )
            record = node.record(receipt_id)
            assert record.charge is not None
            assert 0 < record.charge <= int(requirements.amount)
            assert world.settlement.balance_of(world.agent_id) == record.charge
            after = await asyncio.to_thread(world.token.balance_of, client_key.address)
            assert before - after == record.charge  # the rest was refunded
        finally:
            process.terminate()
            await process.wait()
