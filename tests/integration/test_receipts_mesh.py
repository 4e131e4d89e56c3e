"""Receipts across a real mesh: three plugin processes under three linked host doubles.

Everything is real but mesh-llm: anvil with the contracts, each node's key
registered as an ERC-8004 agent bound to its peer id, three `mesh-x402 serve`
processes each under its own host double (linked into one mesh, channel
relay included), the fake mesh-llm API upstream, SQLite journals. A client
pays through the entry node (serving nothing itself) for a model a peer
serves, and for a model split across two peers; another client pays a node
for a model only it serves. Every participant ends up holding the signed
receipt and its own acknowledgement, a peer refuses the same authorization
once the reservation reached it, and forged or unverified channel messages
change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import Deployment, deploy
from mesh_x402.commands._chain import connect_node
from mesh_x402.commands.register import ensure_registered
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.receipts import Credit, Receipt, ReceiptDomain, receipt_digest, sign_digest
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.hostdouble import Host, HostConfig, Mesh
from mesh_x402.keys import create_key_file
from mesh_x402.mesh.gossip import CONTENT_TYPE, KIND, gossip_digest
from mesh_x402.mesh.receipting import receipt_to_pb
from mesh_x402.store.journal import Journal, PaymentState
from mesh_x402.store.receipts import ReceiptStore
from x402.schemas import PaymentRequirements

pytestmark = pytest.mark.integration

MODEL = "fake-model"
SPLIT = "split-model"
LOCAL = "local-model"
PEER_IDS = ("a1" * 32, "b2" * 32, "c3" * 32)
GIB = 2**30
FUNDS = 10**9
WAIT_SECONDS = 90.0
ROUTING_SHARE_BPS = 1000


@dataclass
class Chain:
    url: str
    client: ChainClient
    deployment: Deployment
    domain: TokenDomain


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    with Anvil() as anvil:
        client = ChainClient.connect(anvil.url, chain_id=31337)
        deployment = deploy(
            client, dev_account(0), with_test_token=True, with_identity_registry=True
        )
        token = TokenBinding(client, deployment.token)
        domain = TokenDomain(token.name(), token.version(), client.chain_id, token.address)
        yield Chain(anvil.url, client, deployment, domain)


def write_node(folder: Path, chain: Chain, upstream: str, peer_id: str) -> tuple[Path, int]:
    """A node folder (key, node.toml), its key funded with gas and registered; its agentId."""
    folder.mkdir(parents=True)
    key = create_key_file(folder / "node.key")
    deployment = chain.deployment
    (folder / "node.toml").write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"

[upstream]
url = "{upstream}"
timeout_seconds = 30

[chain]
rpc = "{chain.url}"
chain_id = 31337
token = "{deployment.token}"
settlement = "{deployment.settlement}"
identity_registry = "{deployment.identity_registry}"

[pricing]
unknown_models = "refuse"
max_completion_tokens = 64

[pricing.models."{MODEL}"]
base = 2000
prompt_per_1k = 1000
completion_per_1k = 4000

[pricing.models."{SPLIT}"]
base = 3001
prompt_per_1k = 1500
completion_per_1k = 6000

[pricing.models."{LOCAL}"]
base = 500
prompt_per_1k = 100
completion_per_1k = 400

[receipts]
routing_share_bps = {ROUTING_SHARE_BPS}
""",
        encoding="utf-8",
    )
    chain.client.w3.provider.make_request(
        "anvil_setBalance",  # type: ignore[arg-type]
        [key.address, hex(10**20)],
    )
    config = folder / "node.toml"
    registration = ensure_registered(connect_node(config), peer_id=bytes.fromhex(peer_id))
    return config, registration.agent_id


@dataclass
class Node:
    host: Host
    state: Path
    agent_id: int
    log: Path

    def store(self) -> tuple[Journal, ReceiptStore]:
        journal = Journal.in_state_dir(self.state)
        return journal, ReceiptStore(journal)

    def read(self, what: Callable[[ReceiptStore], Any]) -> Any:
        journal, store = self.store()
        try:
            return what(store)
        finally:
            journal.close()

    def logged(self, event: str, **fields: Any) -> bool:
        """Whether the plugin logged `event` with these fields (JSON lines on stderr)."""
        if not self.log.exists():
            return False
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return True
        return False

    @property
    def paid_url(self) -> str:
        return f"{self.host.management_url}/api/plugins/x402/http/v1/chat/completions"


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until `check()` holds; fail naming `what` after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def mesh(chain: Chain, tmp_path: Path) -> AsyncIterator[list[Node]]:
    """Node 0 serves nothing, node 1 serves MODEL, nodes 1 and 2 split SPLIT (48 + 80 GiB)."""
    models = [FakeModel(name, completion_tokens=24, chunks=4) for name in (MODEL, SPLIT, LOCAL)]
    with FakeUpstream(models) as upstream:
        nodes = []
        serving = ([], [MODEL], ["other-model"])
        hosted = ([], [SPLIT], [SPLIT])
        for index, peer_id in enumerate(PEER_IDS):
            folder = tmp_path / f"node{index}"
            config, agent_id = write_node(folder, chain, upstream.url, peer_id)
            log = tmp_path / f"plugin{index}.log"
            host = Host(
                HostConfig(
                    plugin_name="x402",
                    command=[sys.executable, "-m", "mesh_x402", "serve", "--config", str(config)],
                    peer_id=peer_id,
                    home=tmp_path / f"home{index}",
                    env={"PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")},
                    vram_bytes=(24, 48, 80)[index] * GIB,
                    serving_models=serving[index],
                    hosted_models=hosted[index],
                    stderr_path=log,
                )
            )
            nodes.append(Node(host, folder / "state", agent_id, log))
        linked = Mesh([node.host for node in nodes])
        await linked.start()
        try:
            for node in nodes:
                await eventually(
                    lambda node=node: len(node.read(lambda s: s.identities(now=time.time()))) == 2,
                    f"node {node.agent_id} to verify both peers' identities",
                )
            yield nodes
        finally:
            await linked.stop()


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def paid_receipt(chain: Chain, entry: Node, model: str) -> tuple[Any, int]:
    """Pay `entry` for one request to `model`; the receipt it signed and the charge."""
    body = chat(model)
    requirements = await requirements_for(entry, body)
    payload = sign_payment(funded_payer(chain), requirements, chain.domain, now=int(time.time()))
    response = await pay(entry, body, encode_header(payload))
    assert response.status_code == 200, response.text
    settle = json.loads(base64.b64decode(response.headers["payment-response"]))
    issued = entry.read(lambda s: s.for_payment(settle["extra"]["receiptId"]))
    assert issued is not None
    return issued, int(settle["amount"])


async def requirements_for(node: Node, body: dict[str, Any]) -> PaymentRequirements:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(node.paid_url, json=body)
    assert response.status_code == 402, response.text
    required = json.loads(base64.b64decode(response.headers["payment-required"]))
    return PaymentRequirements.model_validate(required["accepts"][0])


async def pay(node: Node, body: dict[str, Any], header: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(node.paid_url, json=body, headers={"PAYMENT-SIGNATURE": header})


def funded_payer(chain: Chain) -> LocalAccount:
    payer: LocalAccount = Account.create()
    TokenBinding(chain.client, chain.deployment.token).mint(dev_account(0), payer.address, FUNDS)
    return payer


def forged_gossip(
    sender_agent: int, sender_peer: str, key: bytes, **body: Any
) -> pb.ChannelMessage:
    """A channel message as a peer would send it, signed with `key`."""
    (name, content), = body.items()  # fmt: skip
    message = gpb.GossipMessage(
        type={"receipt": gpb.MESSAGE_TYPE_RECEIPT,
              "nonce_reservation": gpb.MESSAGE_TYPE_NONCE_RESERVATION}[name],
        sender_agent_id=sender_agent, sender_peer_id=sender_peer, chain_id=31337,
        timestamp_ms=int(time.time() * 1000), message_id=os.urandom(16),
    )  # fmt: skip
    getattr(message, name).CopyFrom(content)
    payload = message.SerializeToString()
    signed = gpb.SignedMessage(payload=payload, signature=sign_digest(key, gossip_digest(payload)))
    return pb.ChannelMessage(
        channel="x402.v1", source_peer_id=sender_peer, content_type=CONTENT_TYPE,
        body=signed.SerializeToString(), message_kind=KIND,
    )  # fmt: skip


async def test_paid_request_receipt_held_and_acked_by_participants(
    chain: Chain, mesh: list[Node]
) -> None:
    """Pay at node 0 for a model node 1 serves: both hold the receipt and node 1's ack;
    node 2 then refuses the same authorization; forged messages change nothing."""
    entry, worker, bystander = mesh
    payer = funded_payer(chain)
    body = chat(MODEL)
    requirements = await requirements_for(entry, body)
    payload = sign_payment(payer, requirements, chain.domain, now=int(time.time()))
    header = encode_header(payload)
    nonce = payload["payload"]["authorization"]["nonce"]

    response = await pay(entry, body, header)
    assert response.status_code == 200, response.text
    settle = json.loads(base64.b64decode(response.headers["payment-response"]))
    payment_id = settle["extra"]["receiptId"]
    charge = int(settle["amount"])

    # The entry node: chargeable with a signed receipt crediting itself and the worker.
    issued = entry.read(lambda s: s.for_payment(payment_id))
    assert issued is not None
    journal, _ = entry.store()
    record = journal.get(payment_id)
    journal.close()
    assert record is not None
    assert (record.state, record.charge) == (PaymentState.CHARGEABLE, charge)
    routing = charge * ROUTING_SHARE_BPS // 10_000
    assert issued.receipt.credits == (
        Credit(entry.agent_id, routing),
        Credit(worker.agent_id, charge - routing),
    )
    assert issued.receipt.refund == int(requirements.amount) - charge
    domain = ReceiptDomain(31337, chain.deployment.settlement)
    assert receipt_digest(issued.receipt, domain) == issued.receipt_hash
    (settleable,) = entry.read(lambda s: s.settleable(10))
    assert settleable.receipt_hash == issued.receipt_hash

    # The worker holds the receipt and its own ack; the entry node collects that ack.
    digest = issued.receipt_hash
    await eventually(lambda: worker.read(lambda s: s.get(digest)) is not None, "worker receipt")
    worker_acks = worker.read(lambda s: s.acks(digest))
    assert [a.agent_id for a in worker_acks] == [worker.agent_id]
    await eventually(lambda: len(entry.read(lambda s: s.acks(digest))) == 1, "ack at entry")
    (ack,) = entry.read(lambda s: s.acks(digest))
    assert (ack.agent_id, ack.signature) == (worker.agent_id, worker_acks[0].signature)
    assert bystander.read(lambda s: s.get(digest)) is None  # credited nothing: holds nothing

    # Invariant 3: the reservation reached node 2, which refuses the same authorization.
    await eventually(
        lambda: bystander.read(lambda s: s.reservation(payer.address, nonce)) is not None,
        "reservation at node 2",
    )
    again = await pay(bystander, body, header)
    assert again.status_code == 402
    assert json.loads(again.content)["error"] == "invalid_exact_evm_nonce_already_used"
    journal, _ = bystander.store()
    assert journal.find(payer.address, nonce) is None
    journal.close()

    # A receipt crediting the worker, "from" the entry node but signed by another key.
    intruder = Account.create()
    fake = Receipt(
        payer=payer.address, nonce=os.urandom(32), value=10**6, request_id="forged",
        model=MODEL, prompt_tokens=1, completion_tokens=1, price_version=1,
        timestamp=int(time.time()), charge=10**6, refund=0, entry_agent_id=entry.agent_id,
        credits=(Credit(worker.agent_id, 10**6),), policy="vram-proportional",
    )  # fmt: skip
    forged = forged_gossip(
        entry.agent_id, entry.host.peer_id, intruder.key,
        receipt=receipt_to_pb(fake, sign_digest(intruder.key, receipt_digest(fake, domain))),
    )  # fmt: skip
    # A reservation from an agentId nobody verified.
    unverified = forged_gossip(
        999, "dd" * 32, intruder.key,
        nonce_reservation=gpb.NonceReservation(
            payer=bytes.fromhex(payer.address[2:]), nonce=b"\x01" * 32, value="1"
        ),
    )  # fmt: skip
    assert await worker.host.deliver_channel(forged, "x402")
    assert await worker.host.deliver_channel(unverified, "x402")
    await eventually(
        lambda: (
            worker.logged("gossip.dropped", reason="signer_mismatch")
            and worker.logged("gossip.dropped", reason="unverified_sender")
        ),
        "the worker to drop both forged messages",
    )
    assert len(worker.read(lambda s: s.receipts())) == 1
    assert worker.read(lambda s: s.reservation(payer.address, "0x" + "01" * 32)) is None


async def test_split_and_local_models(chain: Chain, mesh: list[Node]) -> None:
    """A model split across two peers credits both stages by VRAM, and both countersign;
    a model only the entry node serves credits it alone."""
    entry, stage_a, stage_b = mesh
    issued, charge = await paid_receipt(chain, entry, SPLIT)
    routing = charge * ROUTING_SHARE_BPS // 10_000
    rest = charge - routing
    shares = (rest * 48 // 128, rest * 80 // 128)
    assert issued.receipt.credits == (
        Credit(entry.agent_id, charge - sum(shares)),
        Credit(stage_a.agent_id, shares[0]),
        Credit(stage_b.agent_id, shares[1]),
    )
    digest = issued.receipt_hash
    await eventually(lambda: len(entry.read(lambda s: s.acks(digest))) == 2, "both stage acks")
    for stage in (stage_a, stage_b):
        kept = stage.read(lambda s: s.get(digest))
        assert kept is not None
        assert kept.receipt == issued.receipt
        assert [a.agent_id for a in stage.read(lambda s: s.acks(digest))] == [stage.agent_id]

    # Through another entry node, for a model no peer lists: the entry node alone.
    solo, charge = await paid_receipt(chain, stage_a, LOCAL)
    assert solo.receipt.credits == (Credit(stage_a.agent_id, charge),)
    assert solo.receipt.entry_agent_id == stage_a.agent_id
    for other in (entry, stage_b):
        assert other.read(lambda s: s.get(solo.receipt_hash)) is None
