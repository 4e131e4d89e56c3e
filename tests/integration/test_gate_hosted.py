"""The gate as mesh-llm's clients on the node's machine reach it: through the binding.

A real `mesh-x402 serve` process under the host double, anvil with the
contracts, the fake mesh-llm API. The official x402 SDK client pays at the
host's management URL (`/api/plugins/x402/http/v1/...`), and a streamed
answer reaches it chunk by chunk through the host's stream relay.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import deploy
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.hostdouble import Host, HostConfig
from mesh_x402.keys import create_key_file
from mesh_x402.store.journal import Journal, PaymentState
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm.exact.register import register_exact_evm_client

pytestmark = pytest.mark.integration

FUNDS = 10**9


@dataclass
class Node:
    host: Host
    state: Path
    upstream: FakeUpstream
    payer: LocalAccount

    def url(self, route: str) -> str:
        return f"{self.host.management_url}/api/plugins/x402/http{route}"

    def record(self, receipt_id: str) -> Any:
        journal = Journal.in_state_dir(self.state)
        try:
            return journal.get(receipt_id)
        finally:
            journal.close()


def _write_node(folder: Path, rpc: str, token: str, settlement: str, upstream: str) -> Path:
    folder.mkdir(parents=True)
    create_key_file(folder / "node.key")
    config = folder / "node.toml"
    config.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"

[upstream]
url = "{upstream}"
timeout_seconds = 30

[chain]
rpc = "{rpc}"
chain_id = 31337
token = "{token}"
settlement = "{settlement}"

[pricing]
unknown_models = "refuse"
max_completion_tokens = 64

[pricing.models."held"]
base = 2000
prompt_per_1k = 1000
completion_per_1k = 4000
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[str, ChainClient, str, str, LocalAccount]]:
    with Anvil() as anvil:
        client = ChainClient.connect(anvil.url, chain_id=31337)
        deployment = deploy(
            client, dev_account(0), with_test_token=True, with_identity_registry=True
        )
        payer = Account.from_key("0x" + "7c" * 32)
        TokenBinding(client, deployment.token).mint(dev_account(0), payer.address, FUNDS)
        yield anvil.url, client, deployment.token, deployment.settlement, payer


@pytest.fixture
async def node(
    chain: tuple[str, ChainClient, str, str, LocalAccount], tmp_path: Path
) -> AsyncIterator[Node]:
    rpc, _, token, settlement, payer = chain
    with FakeUpstream(
        [FakeModel("held", completion_tokens=24, chunks=6, hold_after_chunks=2)]
    ) as api:
        config = _write_node(tmp_path / "node", rpc, token, settlement, api.url)
        host = Host(
            HostConfig(
                plugin_name="x402",
                command=[sys.executable, "-m", "mesh_x402", "serve", "--config", str(config)],
                home=tmp_path / "home",
                env={"PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")},
                stderr_path=tmp_path / "plugin.log",
            )
        )
        await host.start()
        try:
            yield Node(host, tmp_path / "node" / "state", api, payer)
        finally:
            await host.stop()


async def _gate_ready(node: Node) -> None:
    """serve brings the gate up after the handshake; wait until it answers 402."""
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(300):
            response = await client.post(
                node.url("/v1/chat/completions"), json={"model": "held", "max_tokens": 1}
            )
            if response.status_code == 402:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gate never answered 402 (last: {response.status_code})")


async def test_sdk_client_streams_through_the_binding(node: Node) -> None:
    """Paid through the host's binding: the first SSE bytes arrive while the model is
    still generating, and the payment ends chargeable at the usage price."""
    await _gate_ready(node)
    sdk = x402Client()
    register_exact_evm_client(sdk, node.payer)
    sdk.set_spend_controls(False)
    body = {
        "model": "held",
        "messages": [{"role": "user", "content": "stream to me"}],
        "stream": True,
        "max_tokens": 24,
    }
    async with (
        httpx.AsyncClient(transport=x402AsyncTransport(sdk), timeout=60) as client,
        client.stream("POST", node.url("/v1/chat/completions"), json=body) as response,
    ):
        assert response.status_code == 200
        settle = json.loads(base64.b64decode(response.headers["payment-response"]))
        lines = response.aiter_lines()
        first = await anext(lines)
        assert first.startswith("data: ")
        assert not node.upstream.requests[-1].finished  # held by the fake: not done yet
        node.upstream.release()
        rest = [line async for line in lines]
    assert [line for line in rest if line][-1] == "data: [DONE]"
    record = node.record(settle["extra"]["receiptId"])
    assert record is not None
    assert record.state is PaymentState.CHARGEABLE
    assert record.completion_tokens == 24
    assert record.charge < record.value
