"""`mesh-x402 serve` settles in the background, serves the operator API, posts to the blackboard.

A real plugin process under the host double (private mesh, blackboard
served on the management port), on anvil with fresh contracts. The test
journals signed payments and receipts into the node's ledger (another
connection to the same SQLite file, as a second process would) and then
only watches: the serve process's reconciler settles them, a line per
settled batch appears on the blackboard, and the gRPC operator API on the
node's Unix socket answers with the host-given peer id.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from grpc import aio
from mesh_x402._pb.mesh_x402.v1 import operator_pb2 as opb
from mesh_x402._pb.mesh_x402.v1 import operator_pb2_grpc as opb_grpc
from mesh_x402.chain.anvil import Anvil
from mesh_x402.hostdouble import Host, HostConfig
from mesh_x402.store.journal import PaymentState
from settlement_kit import Ledger, make_world, payer

pytestmark = pytest.mark.integration

PEER_ID = "d4" * 32
WAIT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _until(check: Callable[[], bool], what: str) -> None:
    """Poll `check()` until true; fail naming `what` after a generous hang guard."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_serve_settles_posts_and_answers_the_operator_api(
    anvil: Anvil, tmp_path: Path, ledger: Ledger
) -> None:
    """Payments journalled while serve runs are settled by its loop; each settled
    batch is one blackboard line; GetIdentity over the Unix socket names this node."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="srv-") as short:
        operator_socket = f"{short}/operator.sock"
        extra = (
            "interval_seconds = 0.5\n"
            "[gateway]\n"
            'listen = "127.0.0.1:0"\n'
            "[operator]\n"
            f'listen = "unix:{operator_socket}"\n'
            "[mesh]\n"
            f'management_url = "http://127.0.0.1:{port}"\n'
        )
        world = await asyncio.to_thread(
            make_world, anvil, tmp_path / "node", batch_size=2, extra=extra
        )
        journal, receipts = ledger(world.state_dir)
        host = Host(
            HostConfig(
                plugin_name="x402",
                command=[
                    sys.executable,
                    "-m",
                    "mesh_x402",
                    "serve",
                    "--config",
                    str(world.config_path),
                ],
                peer_id=PEER_ID,
                home=tmp_path / "home",
                management_port=port,
                mesh_visibility="private",
                blackboard=True,
                stderr_path=tmp_path / "plugin.log",
            )
        )
        await host.start()
        try:
            await asyncio.to_thread(world.fund, payer(30))
            for n in range(3):
                await asyncio.to_thread(
                    world.pay, receipts, journal, payer(30), value=1_000, charge=100 + n
                )

            await _until(lambda: journal.count(PaymentState.SETTLED) == 3, "3 settled payments")
            assert host.blackboard is not None
            board = host.blackboard
            await _until(lambda: len(board.feed(author="x402")) == 2, "two blackboard posts")
            lines = sorted(item.text for item in board.feed(author="x402"))
            assert all(line.startswith("x402: settled ") for line in lines)
            assert any("settled 2 payments, total 201 " in line for line in lines)
            assert any("settled 1 payment, total 102 " in line for line in lines)
            assert {item.peer_id for item in board.feed(author="x402")} == {PEER_ID}
            assert world.settlement.balance_of(world.agent_id) == 303

            async with aio.insecure_channel(f"unix:{operator_socket}") as channel:
                stub = opb_grpc.OperatorStub(channel)
                identity = await stub.GetIdentity(opb.GetIdentityRequest())
                status = await stub.GetSettlementStatus(opb.GetSettlementStatusRequest())
            assert identity.peer_id == PEER_ID
            assert identity.agent_id == world.agent_id
            assert dict(status.payments) == {"settled": 3}
        finally:
            await host.stop()
            journal.close()
