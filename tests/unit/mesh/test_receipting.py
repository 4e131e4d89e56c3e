"""Receipts across two nodes: issue at the entry, countersign at the worker, collect the ack."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from gossip_kit import Outbox
from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.config import NodeConfig, Price, PricingConfig
from mesh_x402.core.receipts import (
    Credit,
    Receipt,
    ReceiptDomain,
    receipt_digest,
    sign_digest,
)
from mesh_x402.core.verify import recover_signer
from mesh_x402.mesh.channels import Channel, ChannelMessage
from mesh_x402.mesh.gossip import Gossip
from mesh_x402.mesh.identities import Claim, Identities, Verdict
from mesh_x402.mesh.receipting import MeshReceipts, receipt_from_pb, receipt_to_pb
from mesh_x402.mesh.view import MeshView
from mesh_x402.store.journal import ClaimOutcome, Journal, NewPayment, PaymentState
from mesh_x402.store.receipts import ReceiptStore

CHAIN_ID = 31337
REGISTRY = "0x" + "e0" * 20
DOMAIN = ReceiptDomain(CHAIN_ID, "0x" + "5e" * 20)
KEYS = {"a": b"\x0a" * 32, "b": b"\x0b" * 32, "m": b"\x0c" * 32}
PEERS = {"a": "aa" * 32, "b": "bb" * 32, "m": "cc" * 32}
AGENTS = {"a": 0, "b": 1, "m": 2}
PAYER = "0x" + "9a" * 20
NONCE = "0x" + "42" * 32
PRICING = PricingConfig(default=Price(base=1000, prompt_per_1k=500, completion_per_1k=2000))


class Registry:
    def verify(self, claim: Claim) -> Verdict:
        name = next(n for n, agent in AGENTS.items() if agent == claim.agent_id)
        bound = (PEERS[name], Account.from_key(KEYS[name]).address)
        return Verdict.VERIFIED if (claim.peer_id, claim.signer) == bound else Verdict.REFUSED


@dataclasses.dataclass
class Node:
    name: str
    journal: Journal
    store: ReceiptStore
    gossip: Gossip
    identities: Identities
    receipts: MeshReceipts
    outbox: Outbox


def make_node(
    name: str, tmp_path: Path, pricing: PricingConfig = PRICING, *, peers: bool = True
) -> Node:
    journal = Journal.in_state_dir(tmp_path / name)
    store = ReceiptStore(journal)
    counters: Counter[str] = Counter()
    identities = Identities(Registry(), store, counters)
    outbox = Outbox()
    view = MeshView(tmp_path / name)
    view.apply(pb.MeshEvent(kind=pb.MeshEvent.KIND_LOCAL_ACCEPTING, local_peer_id=PEERS[name]))
    for other in ("a", "b") if peers else ():
        if other != name:
            peer = pb.MeshPeer(peer_id=PEERS[other], vram_bytes=24 * 2**30, serving_models=["m"])
            view.apply(pb.MeshEvent(kind=pb.MeshEvent.KIND_PEER_UP, peer=peer))
    gossip = Gossip(
        Channel(outbox),
        KEYS[name],
        agent_id=AGENTS[name],
        chain_id=CHAIN_ID,
        registry=REGISTRY,
        local_peer_id=lambda: PEERS[name],
        identities=identities,
        counters=counters,
    )
    receipts = MeshReceipts(
        config=NodeConfig(pricing=pricing),
        gossip=gossip,
        store=store,
        journal=journal,
        view=view,
        identities=identities,
        domain=DOMAIN,
        secret=KEYS[name],
    )
    return Node(name, journal, store, gossip, identities, receipts, outbox)


async def pump(source: Node, target: Node) -> None:
    """Deliver everything `source` sent so far to `target`, then let checks finish."""
    await source.receipts.aclose()
    sent = source.outbox.bodies
    source.outbox.sent.clear()
    for raw in sent:
        await target.gossip.receive(ChannelMessage(raw, "x402.gossip", "", "", "", ""))
        await target.identities.drain()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = make_node("a", tmp_path), make_node("b", tmp_path)
    yield a, b
    a.journal.close()
    b.journal.close()


async def introduce(a: Node, b: Node) -> None:
    await a.gossip.claim()
    await pump(a, b)
    await pump(b, a)  # b's re-flood of a's claim, and b's own claim in answer
    await pump(a, b)
    assert a.identities.get(AGENTS["b"]) is not None
    assert b.identities.get(AGENTS["a"]) is not None


def payment(**overrides: object) -> NewPayment:
    base = NewPayment(
        receipt_id="p1", request_id="q1", payer=PAYER, nonce=NONCE, value=100_000,
        valid_after=0, valid_before=2_000_000_000, signature="0x" + "11" * 65,
        network="eip155:31337", asset="0x" + "bb" * 20, pay_to=DOMAIN.settlement,
        model="m", x402_version=2,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


async def charge(node: Node) -> None:
    assert node.journal.claim(payment(), spendable=None) is ClaimOutcome.ACCEPTED
    await node.receipts.charge(
        "p1", payer=PAYER, nonce=NONCE, value=100_000, request_id="q1", model="m",
        prompt_tokens=1000, completion_tokens=2000, charge=5_500,
    )  # fmt: skip


async def test_receipt_issued_countersigned_and_collected(nodes: tuple[Node, Node]) -> None:
    """The entry signs and keeps the receipt with the payment; the worker keeps it and its
    own ack; the entry keeps the worker's ack."""
    a, b = nodes
    await introduce(a, b)
    await charge(a)
    record = a.journal.get("p1")
    assert record is not None
    assert (record.state, record.charge) == (PaymentState.CHARGEABLE, 5_500)
    issued = a.store.for_payment("p1")
    assert issued is not None
    assert issued.receipt.credits == (Credit(0, 550), Credit(1, 4_950))
    assert recover_signer(issued.receipt_hash, issued.signature) == a.gossip.address
    (item,) = a.store.settleable(10)
    assert item.receipt_hash == issued.receipt_hash

    await pump(a, b)
    kept = b.store.get(issued.receipt_hash)
    assert kept is not None
    assert kept.receipt == issued.receipt
    (own_ack,) = b.store.acks(issued.receipt_hash)
    assert (own_ack.agent_id, own_ack.signer) == (1, b.gossip.address)

    await pump(b, a)
    (ack,) = a.store.acks(issued.receipt_hash)
    assert (ack.agent_id, ack.signature) == (1, own_ack.signature)
    assert recover_signer(issued.receipt_hash, ack.signature) == b.gossip.address


async def test_the_receipt_leaves_only_after_the_journal_synced_it(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charge commits unsynced (the answer need not wait for the disk), and
    the receipt is flooded only once a power loss can no longer undo it."""
    a, b = nodes
    await introduce(a, b)
    assert a.journal.claim(payment(), spendable=None) is ClaimOutcome.ACCEPTED
    sent_before = len(a.outbox.sent)
    syncs: list[int] = []  # floods already sent at each sync
    real_sync = a.journal.sync

    def sync() -> None:
        syncs.append(len(a.outbox.sent) - sent_before)
        real_sync()

    monkeypatch.setattr(a.journal, "sync", sync)
    await a.receipts.charge(
        "p1", payer=PAYER, nonce=NONCE, value=100_000, request_id="q1", model="m",
        prompt_tokens=1000, completion_tokens=2000, charge=5_500,
    )  # fmt: skip
    await a.receipts.aclose()
    assert syncs == [0]
    assert len(a.outbox.sent) - sent_before == 1
    record = a.journal.get("p1")
    assert record is not None
    assert record.state is PaymentState.CHARGEABLE


async def test_a_node_without_peers_signs_its_receipt_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standalone, or alone in its mesh: no reservation, no flood (nobody would
    get them), but the receipt is kept, signed and synced."""
    alone = make_node("a", tmp_path, peers=False)
    syncs: list[None] = []
    real_sync = alone.journal.sync

    def sync() -> None:
        syncs.append(None)
        real_sync()

    monkeypatch.setattr(alone.journal, "sync", sync)
    await alone.receipts.reserve(payer=PAYER, nonce=NONCE, value=100_000, valid_before=2**40)
    assert alone.journal.claim(payment(), spendable=None, durable=False) is ClaimOutcome.ACCEPTED
    await alone.receipts.charge(
        "p1", payer=PAYER, nonce=NONCE, value=100_000, request_id="q1", model="m",
        prompt_tokens=1000, completion_tokens=2000, charge=5_500,
    )  # fmt: skip
    await alone.receipts.aclose()
    await eventually_true(lambda: bool(syncs))
    assert alone.outbox.sent == []
    issued = alone.store.for_payment("p1")
    assert issued is not None
    assert recover_signer(issued.receipt_hash, issued.signature) == alone.gossip.address
    alone.journal.close()


async def eventually_true(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for a worker thread's effect; not a timing assertion."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_worker_disputes_a_wrong_charge(tmp_path: Path) -> None:
    """A worker whose price sheet (same version) gives another charge does not countersign."""
    a = make_node("a", tmp_path)
    b = make_node("b", tmp_path, PricingConfig(default=Price(base=1)))
    await introduce(a, b)
    await charge(a)
    await pump(a, b)
    issued = a.store.for_payment("p1")
    assert issued is not None
    assert b.store.get(issued.receipt_hash) is None
    assert b.store.acks(issued.receipt_hash) == []
    assert b.gossip.counters["receipt_charge"] == 1
    a.journal.close()
    b.journal.close()


async def test_forged_receipt_changes_nothing(nodes: tuple[Node, Node]) -> None:
    """A receipt in a verified sender's message but signed by another key is not kept."""
    a, b = nodes
    await introduce(a, b)
    receipt = Receipt(
        payer=PAYER, nonce=bytes(32), value=10, request_id="x", model="m", prompt_tokens=0,
        completion_tokens=0, price_version=1, timestamp=1, charge=10, refund=0,
        entry_agent_id=0, credits=(Credit(1, 10),), policy="vram-proportional",
    )  # fmt: skip
    forged = receipt_to_pb(receipt, sign_digest(KEYS["m"], receipt_digest(receipt, DOMAIN)))
    await a.gossip.publish("receipt", forged)
    await pump(a, b)
    assert b.store.receipts() == []
    assert b.gossip.counters["bad_receipt_signature"] == 1


async def test_ack_for_uncredited_agent_is_refused(nodes: tuple[Node, Node]) -> None:
    """An ack from an agent the receipt does not credit is not kept."""
    a, b = nodes
    await introduce(a, b)
    assert a.journal.claim(payment(), spendable=None) is ClaimOutcome.ACCEPTED
    await a.receipts.charge(
        "p1", payer=PAYER, nonce=NONCE, value=100_000, request_id="q1", model="solo-model",
        prompt_tokens=1, completion_tokens=1, charge=1_000,
    )  # fmt: skip
    issued = a.store.for_payment("p1")
    assert issued is not None
    assert issued.receipt.credits == (Credit(0, 1_000),)
    signature = sign_digest(KEYS["b"], issued.receipt_hash)
    await b.gossip.publish(
        "receipt_ack",
        gpb.ReceiptAck(receipt_hash=issued.receipt_hash, agent_id=1, signature=signature),
    )
    await pump(b, a)
    assert a.store.acks(issued.receipt_hash) == []
    assert a.gossip.counters["ack_not_credited"] == 1


async def test_peer_reservation_refuses_the_claim(nodes: tuple[Node, Node]) -> None:
    """After a verified peer's reservation, this node refuses the same authorization."""
    a, b = nodes
    await introduce(a, b)
    await a.receipts.reserve(payer=PAYER, nonce=NONCE, value=100_000, valid_before=2_000_000_000)
    await pump(a, b)
    reservation = b.store.reservation(PAYER, NONCE)
    assert reservation is not None
    assert reservation.agent_id == AGENTS["a"]
    assert b.journal.claim(payment(), spendable=None) is ClaimOutcome.RESERVED


def test_wire_receipt_round_trip() -> None:
    """The protobuf form keeps every field; malformed amounts are refused."""
    receipt = Receipt(
        payer=PAYER, nonce=b"\x01" * 32, value=2**200, request_id="r", model="m",
        prompt_tokens=3, completion_tokens=4, price_version=2, timestamp=5, charge=2**199,
        refund=2**200 - 2**199, entry_agent_id=9, credits=(Credit(9, 2**199),), policy="p",
    )  # fmt: skip
    assert receipt_from_pb(receipt_to_pb(receipt, b"")) == receipt
    broken = receipt_to_pb(receipt, b"")
    broken.value = "-1"
    with pytest.raises(ValueError, match="not a decimal"):
        receipt_from_pb(broken)


async def test_reservation_never_fails_the_request(nodes: tuple[Node, Node]) -> None:
    """With the host link down, reserving is logged and counted, not raised into the request."""
    a, _ = nodes

    async def down(_envelope: pb.Envelope) -> None:
        raise RuntimeError("the session is not running")

    a.gossip._channel = Channel(down)
    await a.receipts.reserve(payer=PAYER, nonce=NONCE, value=1, valid_before=2_000_000_000)
    assert a.gossip.counters["reservation_not_sent"] == 1
