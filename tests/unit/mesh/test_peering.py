"""The peer layer as serve runs it: when it joins the gossip, and what it does before."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from gossip_kit import Clock, Outbox
from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.config import ChainConfig, NodeConfig
from mesh_x402.keys import NodeKey
from mesh_x402.mesh.channels import Channel, ChannelMessage
from mesh_x402.mesh.gossip import KIND, Gossip
from mesh_x402.mesh.identities import Claim, Identities, Verdict
from mesh_x402.mesh.peering import CLAIM_REFRESH_SECONDS, CLAIM_SPACING_SECONDS, Peering
from mesh_x402.mesh.view import MeshView
from mesh_x402.state import IdentityState, save_identity
from mesh_x402.store.journal import Journal
from structlog.testing import capture_logs

REGISTRY = "0x" + "e0" * 20
SETTLEMENT = "0x" + "5e" * 20
OUR_KEY = b"\x01" * 32
PEER_KEY = b"\x02" * 32
OUR_PEER = "aa" * 32
PEER = "bb" * 32


class Registry:
    """Knows one peer: agent 7 is PEER signing with PEER_KEY."""

    def verify(self, claim: Claim) -> Verdict:
        bound = claim.agent_id == 7 and claim.peer_id == PEER
        signer = Account.from_key(PEER_KEY).address
        return Verdict.VERIFIED if bound and claim.signer == signer else Verdict.REFUSED


def make_config(tmp_path: Path, *, registered: bool = True) -> NodeConfig:
    config = NodeConfig(
        chain=ChainConfig(identity_registry=REGISTRY, settlement=SETTLEMENT, token=SETTLEMENT),
        path=tmp_path / "node.toml",
    )
    if registered:
        save_identity(config.state_path, IdentityState(agent_id=3, chain_id=31337,
                                                       identity_registry=REGISTRY))  # fmt: skip
    return config


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.in_state_dir(tmp_path / "state")
    yield opened
    opened.close()


def make_peering(
    config: NodeConfig, outbox: Outbox, clock: Clock | None = None, *, claim_refresh: float = 60.0
) -> Peering:
    view = MeshView(config.state_path)
    view.apply(pb.MeshEvent(kind=pb.MeshEvent.KIND_LOCAL_ACCEPTING, local_peer_id=OUR_PEER))
    return Peering(
        config,
        NodeKey(OUR_KEY),
        Channel(outbox),
        view,
        verifier=Registry(),
        clock=clock or Clock(time.time()),
        claim_refresh=claim_refresh,
    )


async def peer_claim() -> ChannelMessage:
    """PEER's claim as its own plugin sends it."""
    outbox = Outbox()
    counters: Counter[str] = Counter()
    gossip = Gossip(
        Channel(outbox), PEER_KEY, agent_id=7, chain_id=31337, registry=REGISTRY,
        local_peer_id=lambda: PEER, identities=Identities(Registry(), None, counters),
        counters=counters,
    )  # fmt: skip
    await gossip.claim()
    (sent,) = outbox.sent
    return ChannelMessage(sent.body, sent.message_kind, PEER, "", "", "")


async def test_messages_before_gossip_are_kept_and_processed(
    tmp_path: Path, journal: Journal
) -> None:
    """A peer's claim that arrives while the gate is still starting is checked once it runs."""
    outbox = Outbox()
    peering = make_peering(make_config(tmp_path), outbox)
    await peering.receive(await peer_claim())
    await peering.receive(ChannelMessage(b"{}", "hello", PEER, "", "", ""))
    assert peering.gossip is None
    assert peering.attach(journal) is not None
    await peering.drain()
    assert peering.identities is not None
    identity = peering.identities.get(7)
    assert identity is not None
    assert identity.peer_id == PEER
    assert peering.counters["not_gossip"] == 1
    claims = [m for m in outbox.sent if m.message_kind == KIND]
    assert claims  # our own claim went out when the gossip started


async def test_unregistered_node_joins_no_gossip(tmp_path: Path, journal: Journal) -> None:
    """Without a recorded agentId the gate gets no receipt issuer, and the log says why."""
    peering = make_peering(make_config(tmp_path, registered=False), Outbox())
    with capture_logs() as logs:
        assert peering.attach(journal) is None
    (entry,) = [e for e in logs if e["event"] == "gossip.disabled"]
    assert "mesh-x402 register" in entry["reason"]
    await peering.receive(await peer_claim())
    assert peering.gossip is None


async def test_claim_on_peer_up(tmp_path: Path, journal: Journal) -> None:
    """A PEER_UP makes the node claim its identity again; a PEER_UPDATED does not."""
    outbox, clock = Outbox(), Clock(time.time())
    peering = make_peering(make_config(tmp_path), outbox, clock)
    peering.attach(journal)
    await peering.drain()
    clock.now += 60  # past the spacing between claims
    before = len(outbox.sent)
    updated = pb.MeshEvent(
        kind=pb.MeshEvent.KIND_PEER_UPDATED, local_peer_id=OUR_PEER, peer=pb.MeshPeer(peer_id=PEER)
    )
    await peering.on_event(updated)
    await peering.drain()
    assert len(outbox.sent) == before  # same peer id, no new peer: no claim
    up = pb.MeshEvent(
        kind=pb.MeshEvent.KIND_PEER_UP, local_peer_id=OUR_PEER, peer=pb.MeshPeer(peer_id=PEER)
    )
    await peering.on_event(up)
    await peering.drain()
    sent = outbox.sent[before:]
    (claim,) = [gpb.GossipMessage.FromString(gpb.SignedMessage.FromString(m.body).payload)
                for m in sent]  # fmt: skip
    assert (claim.identity_claim.agent_id, claim.identity_claim.peer_id) == (3, OUR_PEER)


class RegistryKnowingUs:
    """The registry as PEER's plugin reads it: agent 3 is OUR_PEER signing with OUR_KEY."""

    def verify(self, claim: Claim) -> Verdict:
        ours = (3, OUR_PEER, Account.from_key(OUR_KEY).address)
        return Verdict.VERIFIED if (claim.agent_id, claim.peer_id, claim.signer) == ours else (
            Verdict.REFUSED)  # fmt: skip


class WatchedOutbox(Outbox):
    """An outbox that says when something was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_one = asyncio.Event()

    async def __call__(self, envelope: pb.Envelope) -> None:
        await super().__call__(envelope)
        self.sent_one.set()


async def test_claim_lost_at_start_is_repeated(tmp_path: Path, journal: Journal) -> None:
    """A claim a peer missed (its plugin was not up yet) goes out again, and the peer
    verifies us from the repeat."""
    outbox, clock = WatchedOutbox(), Clock(time.time())
    peering = make_peering(make_config(tmp_path), outbox, clock, claim_refresh=0.01)
    peering.attach(journal)
    await peering.drain()
    assert [m.message_kind for m in outbox.sent] == [KIND]  # the start claim...
    outbox.sent.clear()  # ...lost: the peer's plugin was not running
    outbox.sent_one.clear()
    clock.now += CLAIM_SPACING_SECONDS
    # The refresh runs every few milliseconds; the timeout only guards against a hang.
    await asyncio.wait_for(outbox.sent_one.wait(), timeout=10)
    repeat = outbox.sent[0]
    counters: Counter[str] = Counter()
    identities = Identities(RegistryKnowingUs(), None, counters)
    peer = Gossip(
        Channel(Outbox()), PEER_KEY, agent_id=7, chain_id=31337, registry=REGISTRY,
        local_peer_id=lambda: PEER, identities=identities, counters=counters,
    )  # fmt: skip
    await peer.receive(ChannelMessage(repeat.body, repeat.message_kind, OUR_PEER, "", "", ""))
    await identities.drain()
    identity = identities.get(3)
    assert identity is not None
    assert identity.peer_id == OUR_PEER
    await peering.aclose()


async def test_aclose_stops_the_refresh(tmp_path: Path, journal: Journal) -> None:
    """Once closed the node claims no more, however long it has been."""
    outbox, clock = Outbox(), Clock(time.time())
    peering = make_peering(make_config(tmp_path), outbox, clock, claim_refresh=0.01)
    peering.attach(journal)
    await peering.drain()
    await asyncio.wait_for(peering.aclose(), timeout=10)  # a guard against a hang
    outbox.sent.clear()
    clock.now += CLAIM_REFRESH_SECONDS
    await asyncio.sleep(0.05)  # several refresh periods
    assert outbox.sent == []
