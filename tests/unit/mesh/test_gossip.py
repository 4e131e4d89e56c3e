"""Signed gossip: only verified messages from verified senders get through, once."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
from eth_account import Account
from gossip_kit import Clock, Outbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402.core.receipts import sign_digest
from mesh_x402.mesh.channels import Channel, ChannelMessage
from mesh_x402.mesh.gossip import (
    CLAIM_REFRESH_SECONDS,
    CLAIM_SPACING_SECONDS,
    MAX_AGE_MS,
    MAX_HELD,
    MAX_MESSAGE_BYTES,
    MAX_SKEW_MS,
    Dedup,
    Gossip,
    Inbound,
    gossip_digest,
)
from mesh_x402.mesh.identities import DEFAULT_TTL_SECONDS, Claim, Identities, Verdict
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore
from structlog.testing import capture_logs

CHAIN_ID = 31337
REGISTRY = "0x" + "e0" * 20
KEYS = {name: bytes([i + 1]) * 32 for i, name in enumerate("abcm")}
ADDRESSES = {name: Account.from_key(key).address for name, key in KEYS.items()}
PEERS = {name: (f"{i + 1:x}" * 64)[:64] for i, name in enumerate("abcm")}
AGENTS = {"a": 0, "b": 1, "c": 2, "m": 3}
DEDUP = 64  # the nodes' dedup capacity here: small, so a flood test is quick


class Registry:
    """A fake ERC-8004 registry: agentId -> (peer id, signer); counts lookups."""

    def __init__(self, *names: str) -> None:
        self.bindings = {AGENTS[n]: (PEERS[n], ADDRESSES[n]) for n in names}
        self.lookups = 0

    def verify(self, claim: Claim) -> Verdict:
        self.lookups += 1
        binding = self.bindings.get(claim.agent_id)
        if binding == (claim.peer_id, claim.signer):
            return Verdict.VERIFIED
        return Verdict.REFUSED


@dataclasses.dataclass
class Node:
    gossip: Gossip
    identities: Identities
    outbox: Outbox
    got: list[Inbound]


def make_node(name: str, registry: Registry, clock: Clock, store: ReceiptStore | None = None,
              *, agent_id: int | None = None, dedup: int = DEDUP) -> Node:  # fmt: skip
    counters: Counter[str] = Counter()
    identities = Identities(registry, store, counters, clock=clock)
    outbox = Outbox()
    gossip = Gossip(
        Channel(outbox),
        KEYS[name],
        agent_id=AGENTS[name] if agent_id is None else agent_id,
        chain_id=CHAIN_ID,
        registry=REGISTRY,
        local_peer_id=lambda: PEERS[name],
        identities=identities,
        counters=counters,
        clock=clock,
        dedup_capacity=dedup,
    )
    got: list[Inbound] = []

    async def keep(inbound: Inbound) -> None:
        got.append(inbound)

    for body in ("nonce_reservation", "receipt", "receipt_ack", "settlement_notice"):
        gossip.on(body, keep)
    return Node(gossip, identities, outbox, got)


def reservation(n: int = 0) -> gpb.NonceReservation:
    return gpb.NonceReservation(payer=b"\x01" * 20, nonce=n.to_bytes(32, "big"), value="5")


async def deliver(node: Node, raw: bytes, source: str = "ff" * 32) -> None:
    await node.gossip.receive(ChannelMessage(raw, "x402.gossip", source, "", "", ""))
    await node.identities.drain()


async def sent_by(sender: Node, body: str, content: object) -> bytes:
    await sender.gossip.publish(body, content)  # type: ignore[arg-type]
    return sender.outbox.bodies[-1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> Registry:
    return Registry("a", "b", "c")


async def introduced(receiver: Node, sender: Node) -> None:
    """`receiver` verifies `sender`'s claim."""
    await sender.gossip.claim()
    await deliver(receiver, sender.outbox.bodies[-1])
    assert receiver.identities.get(sender.gossip.agent_id) is not None


def claims_in(node: Node) -> list[int]:
    """The agentIds of the identity claims `node` sent."""
    messages = [gpb.GossipMessage.FromString(gpb.SignedMessage.FromString(raw).payload)
                for raw in node.outbox.bodies]  # fmt: skip
    return [m.identity_claim.agent_id for m in messages if m.HasField("identity_claim")]


def forge(payload: gpb.GossipMessage, key: bytes) -> bytes:
    data = payload.SerializeToString()
    return gpb.SignedMessage(
        payload=data, signature=sign_digest(key, gossip_digest(data))
    ).SerializeToString()


def envelope(sender: str, clock: Clock, **overrides: object) -> gpb.GossipMessage:
    fields: dict[str, object] = {
        "type": gpb.MESSAGE_TYPE_NONCE_RESERVATION,
        "sender_agent_id": AGENTS[sender],
        "sender_peer_id": PEERS[sender],
        "chain_id": CHAIN_ID,
        "timestamp_ms": int(clock.now * 1000),
        "message_id": b"\x07" * 16,
        "nonce_reservation": reservation(),
    }
    fields.update(overrides)
    return gpb.GossipMessage(**fields)  # type: ignore[arg-type]


class TestVerifiedTraffic:
    async def test_claim_then_message_is_accepted_and_reflooded(
        self, registry: Registry, clock: Clock
    ) -> None:
        """A verified sender's message reaches the handler once and is broadcast again."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        raw = await sent_by(a, "nonce_reservation", reservation())
        await deliver(b, raw)
        (inbound,) = b.got
        assert inbound.sender.agent_id == AGENTS["a"]
        assert inbound.message.nonce_reservation == reservation()
        assert raw in b.outbox.bodies  # re-flooded byte for byte
        assert b.gossip.counters["accepted_nonce_reservation"] == 1

    async def test_verified_claim_is_reflooded_and_answered(
        self, registry: Registry, clock: Clock
    ) -> None:
        """A new peer's verified claim is passed on, and our own claim goes back to it."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await a.gossip.claim()
        claim = a.outbox.bodies[-1]
        await deliver(b, claim)
        assert claim in b.outbox.bodies
        answers = [gpb.GossipMessage.FromString(gpb.SignedMessage.FromString(m).payload)
                   for m in b.outbox.bodies if m != claim]  # fmt: skip
        assert [m.identity_claim.agent_id for m in answers] == [AGENTS["b"]]

    async def test_replayed_message_changes_nothing(self, registry: Registry, clock: Clock) -> None:
        """The same bytes again (from any source) are dropped as a duplicate."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        raw = await sent_by(a, "nonce_reservation", reservation())
        await deliver(b, raw, source=PEERS["a"])
        sent = len(b.outbox.bodies)
        await deliver(b, raw, source=PEERS["c"])
        assert len(b.got) == 1
        assert len(b.outbox.bodies) == sent
        assert b.gossip.counters["duplicate"] == 1

    async def test_known_claim_needs_no_chain_read(self, registry: Registry, clock: Clock) -> None:
        """A second claim with the same binding is trusted from the cache."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        await a.gossip.claim()
        await deliver(b, a.outbox.bodies[-1])
        assert registry.lookups == 1


class TestRefused:
    async def test_unverified_sender(self, registry: Registry, clock: Clock) -> None:
        """A well-signed message from a sender with no verified claim is dropped, counted
        and logged."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        raw = await sent_by(a, "nonce_reservation", reservation())
        with capture_logs() as logs:
            await deliver(b, raw)
        assert b.got == []
        assert b.gossip.counters["unverified_sender"] == 1
        assert raw not in b.outbox.bodies  # not re-flooded
        dropped = [e for e in logs if e["event"] == "gossip.dropped"]
        assert [(e["reason"], e["sender_agent_id"]) for e in dropped] == [
            ("unverified_sender", AGENTS["a"])
        ]

    async def test_forged_signature(self, registry: Registry, clock: Clock) -> None:
        """A message naming a verified agent but signed by another key is dropped."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        await deliver(b, forge(envelope("a", clock), KEYS["m"]))
        signed = gpb.SignedMessage.FromString(
            forge(envelope("a", clock, message_id=b"2"), KEYS["a"])
        )
        broken = gpb.SignedMessage(
            payload=signed.payload, signature=signed.signature[:64] + b"\x09"
        )
        await deliver(b, broken.SerializeToString())
        tampered = gpb.SignedMessage(
            payload=envelope("a", clock, message_id=b"3").SerializeToString(),
            signature=signed.signature,
        )
        await deliver(b, tampered.SerializeToString())
        assert b.got == []
        assert b.gossip.counters["signer_mismatch"] == 2
        assert b.gossip.counters["bad_signature"] == 1

    async def test_claim_of_another_nodes_agent_id(self, registry: Registry, clock: Clock) -> None:
        """A node claiming a verified node's agentId fails the registry check and is ignored."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        mallory = make_node("m", registry, clock, agent_id=AGENTS["a"])
        await introduced(b, a)
        await mallory.gossip.claim()
        await deliver(b, mallory.outbox.bodies[-1])
        assert b.gossip.counters["claim_refused"] == 1
        identity = b.identities.get(AGENTS["a"])
        assert identity is not None
        assert identity.signer == ADDRESSES["a"]
        await deliver(b, await sent_by(mallory, "nonce_reservation", reservation()))
        assert b.got == []
        assert b.gossip.counters["signer_mismatch"] == 1

    async def test_claim_with_someone_elses_peer_id(self, registry: Registry, clock: Clock) -> None:
        """A claim whose peer id is not the sender's is refused before any chain read."""
        b = make_node("b", registry, clock)
        claim = gpb.IdentityClaim(peer_id=PEERS["c"], agent_id=AGENTS["a"],
                                  identity_registry=bytes.fromhex(REGISTRY[2:]), chain_id=CHAIN_ID,
                                  signer=bytes.fromhex(ADDRESSES["a"][2:]))  # fmt: skip
        message = envelope("a", clock, type=gpb.MESSAGE_TYPE_IDENTITY_CLAIM, identity_claim=claim)
        await deliver(b, forge(message, KEYS["a"]))
        assert b.gossip.counters["bad_claim"] == 1
        assert registry.lookups == 0

    @pytest.mark.parametrize(
        ("shift_ms", "reason"),
        [(-(MAX_AGE_MS + 1), "stale"), (MAX_SKEW_MS + 1, "future")],
    )
    async def test_timestamp_window(
        self, registry: Registry, clock: Clock, shift_ms: int, reason: str
    ) -> None:
        """A message older than the window, or too far ahead, is dropped unopened."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        stamp = int(clock.now * 1000) + shift_ms
        await deliver(b, forge(envelope("a", clock, timestamp_ms=stamp), KEYS["a"]))
        assert b.got == []
        assert b.gossip.counters[reason] == 1

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"\xff\xff\xff", "undecodable"),
            (b"\x00" * (MAX_MESSAGE_BYTES + 1), "too_large"),
        ],
    )
    async def test_garbage(self, registry: Registry, clock: Clock, raw: bytes, reason: str) -> None:
        """Bytes that are not a signed message are counted and dropped, never raised."""
        b = make_node("b", registry, clock)
        await deliver(b, raw)
        assert b.gossip.counters[reason] == 1

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"chain_id": 1}, "wrong_chain"),
            ({"type": gpb.MESSAGE_TYPE_RECEIPT}, "bad_body"),
            ({"nonce_reservation": None, "type": gpb.MESSAGE_TYPE_UNSPECIFIED}, "bad_body"),
            ({"sender_peer_id": "F" * 64}, "bad_peer_id"),
            ({"sender_agent_id": 2**63}, "bad_agent_id"),
        ],
    )
    async def test_bad_envelope(
        self, registry: Registry, clock: Clock, overrides: dict[str, object], reason: str
    ) -> None:
        """A signed message for another chain, with a body that does not match its type, or
        a malformed sender is dropped before any identity lookup."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        await deliver(b, forge(envelope("a", clock, **overrides), KEYS["a"]))
        assert b.got == []
        assert b.gossip.counters[reason] == 1


class TestUnknownSender:
    """A sender we know nothing of may have missed our claim: it gets it, sparingly."""

    async def test_unknown_sender_gets_our_claim_once(
        self, registry: Registry, clock: Clock
    ) -> None:
        """Many messages from one unknown sender make one claim back, and it lets the
        sender verify us; after a refresh period it is answered again."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        for n in range(5):
            clock.now += CLAIM_SPACING_SECONDS  # the overall spacing is not what limits here
            await deliver(b, await sent_by(a, "nonce_reservation", reservation(n)))
        assert claims_in(b) == [AGENTS["b"]]
        assert b.gossip.counters["unverified_sender"] == 5
        await deliver(a, b.outbox.bodies[-1])
        assert a.identities.get(AGENTS["b"]) is not None
        clock.now += CLAIM_REFRESH_SECONDS
        await deliver(b, await sent_by(a, "nonce_reservation", reservation(9)))
        assert claims_in(b) == [AGENTS["b"], AGENTS["b"]]

    async def test_answers_are_spaced_across_senders(
        self, registry: Registry, clock: Clock
    ) -> None:
        """Unknown senders together get at most one claim per spacing interval."""
        b = make_node("b", registry, clock)
        a, c = make_node("a", registry, clock), make_node("c", registry, clock)
        await deliver(b, await sent_by(a, "nonce_reservation", reservation(1)))
        await deliver(b, await sent_by(c, "nonce_reservation", reservation(2)))
        assert claims_in(b) == [AGENTS["b"]]
        clock.now += CLAIM_SPACING_SECONDS
        await deliver(b, await sent_by(c, "nonce_reservation", reservation(3)))
        assert claims_in(b) == [AGENTS["b"], AGENTS["b"]]

    async def test_known_sender_is_not_answered(self, registry: Registry, clock: Clock) -> None:
        """A verified sender's messages make no claim (it verified our answer already)."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        clock.now += CLAIM_REFRESH_SECONDS
        before = claims_in(b)
        await deliver(b, await sent_by(a, "nonce_reservation", reservation()))
        assert claims_in(b) == before


class TestHeldWhileVerifying:
    async def test_message_waits_for_the_claim(self, registry: Registry, clock: Clock) -> None:
        """A message arriving while its sender's claim is checked is handled once it verifies."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await a.gossip.claim()
        claim = a.outbox.bodies[-1]
        message = await sent_by(a, "nonce_reservation", reservation())
        await b.gossip.receive(ChannelMessage(claim, "x402.gossip", "", "", "", ""))
        await b.gossip.receive(ChannelMessage(message, "x402.gossip", "", "", "", ""))
        assert b.gossip.counters["held"] == 1
        await b.identities.drain()
        assert [i.message.nonce_reservation for i in b.got] == [reservation()]

    async def test_held_messages_dropped_when_claim_fails(self, clock: Clock) -> None:
        """If the claim does not verify, what was held is dropped as unverified."""
        registry = Registry("b")
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await a.gossip.claim()
        claim = a.outbox.bodies[-1]
        message = await sent_by(a, "nonce_reservation", reservation())
        await b.gossip.receive(ChannelMessage(claim, "x402.gossip", "", "", "", ""))
        await b.gossip.receive(ChannelMessage(message, "x402.gossip", "", "", "", ""))
        await b.identities.drain()
        assert b.got == []
        assert b.gossip.counters["unverified_sender"] == 1


class TestBoundedMemory:
    def test_dedup_forgets_oldest_and_expired(self) -> None:
        """The dedup never holds more than its capacity, and forgets after its lifetime."""
        dedup = Dedup(capacity=3, ttl=10)
        for key in (b"1", b"2", b"3", b"4"):
            assert dedup.first_sight(key, 0)
        assert len(dedup) == 3
        assert not dedup.first_sight(b"4", 1)
        assert dedup.first_sight(b"1", 1)  # evicted by capacity
        assert dedup.first_sight(b"4", 11)  # expired
        assert len(dedup) == 1

    async def test_flood_of_messages(self, registry: Registry, clock: Clock) -> None:
        """A flood of distinct messages leaves the dedup and the hold queue at their caps."""
        b = make_node("b", registry, clock)
        a = make_node("a", registry, clock)
        for n in range(DEDUP + 500):
            message = envelope("a", clock, message_id=n.to_bytes(4, "big"))
            await b.gossip.receive(ChannelMessage(forge(message, KEYS["a"]), "", "", "", "", ""))
        assert len(b.gossip._dedup) == DEDUP
        assert b.gossip.counters["unverified_sender"] == DEDUP + 500
        assert claims_in(b) == [AGENTS["b"]]  # answered once, not once per message
        # While a claim is under check, held messages stop at the caps.
        await a.gossip.claim()
        await b.gossip.receive(ChannelMessage(a.outbox.bodies[-1], "", "", "", "", ""))
        for n in range(MAX_HELD + 10):
            message = envelope("a", clock, message_id=b"h" + n.to_bytes(4, "big"))
            await b.gossip.receive(ChannelMessage(forge(message, KEYS["a"]), "", "", "", "", ""))
        assert b.gossip.counters["held"] <= MAX_HELD
        assert b.gossip.counters["hold_full"] == MAX_HELD + 10 - b.gossip.counters["held"]
        await b.identities.drain()
        assert len(b.got) == b.gossip.counters["held"]


class TestIdentityStore:
    async def test_verified_identities_survive_a_restart(
        self, registry: Registry, clock: Clock, tmp_path: Path
    ) -> None:
        """A respawned plugin trusts the identities it verified, without a chain read."""
        journal = Journal.in_state_dir(tmp_path)
        a = make_node("a", registry, clock)
        b = make_node("b", registry, clock, ReceiptStore(journal))
        await introduced(b, a)
        again = make_node("b", registry, clock, ReceiptStore(journal))
        assert again.identities.restore() == 1
        await deliver(again, await sent_by(a, "nonce_reservation", reservation(1)))
        assert len(again.got) == 1
        assert registry.lookups == 1
        journal.close()


class TestExpiry:
    async def test_expired_identity_is_checked_again(
        self, registry: Registry, clock: Clock
    ) -> None:
        """After the cache expiry a sender's message waits for a fresh registry check."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        clock.now += DEFAULT_TTL_SECONDS + 1
        assert b.identities.get(AGENTS["a"]) is None
        await deliver(b, await sent_by(a, "nonce_reservation", reservation(2)))
        assert registry.lookups == 2
        assert [i.message.nonce_reservation for i in b.got] == [reservation(2)]

    async def test_identity_no_longer_on_chain(self, registry: Registry, clock: Clock) -> None:
        """A sender whose registry binding changed is not trusted once its cache expires."""
        a, b = make_node("a", registry, clock), make_node("b", registry, clock)
        await introduced(b, a)
        del registry.bindings[AGENTS["a"]]
        clock.now += DEFAULT_TTL_SECONDS + 1
        await deliver(b, await sent_by(a, "nonce_reservation", reservation(3)))
        assert b.got == []
        assert b.gossip.counters["unverified_sender"] == 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=512))
async def test_any_bytes_are_dropped_not_raised(raw: bytes) -> None:
    """Arbitrary channel bytes never raise and never reach a handler."""
    b = make_node("b", Registry("a"), Clock())
    await deliver(b, raw)
    assert b.got == []
    assert sum(b.gossip.counters.values()) >= 1
