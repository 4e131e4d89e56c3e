"""Signed gossip on the `x402.v1` channel: send, verify, deduplicate, re-flood.

The host does not authenticate `source_peer_id` and a broadcast reaches
direct peers only (spec sheet, "Mesh channels"). So every message is a
`SignedMessage` (protos/mesh_x402/v1/gossip.proto): the payload is a
serialized `GossipMessage`, the signature is the sender node's secp256k1
signature over keccak256("mesh-x402/gossip/v1" || payload). What a receiver
believes about the origin comes from that signature and the sender's
verified ERC-8004 identity (mesh/identities.py), never from the host.

On receipt, in order (each failure is dropped and counted by reason, in
`counters`): size; dedup by keccak256 of the message bytes; decode; chain
id; timestamp window; body matches type; signature; then, for identity
claims, the claim's own consistency and a background check on the registry,
and for every other message, a verified sender whose signer and peer id
match. A message that passes is re-flooded (broadcast again, once: the dedup
remembers it) so it reaches the whole mesh, then handed to its handler.

Memory stays bounded under a flood: the dedup keeps at most
`DEDUP_CAPACITY` hashes for `DEDUP_SECONDS` (longer than the timestamp
window, so a replay is either remembered or stale), and messages held while
their sender's claim is being checked are capped per sender and in total.
A replay that slips past an overflowing dedup is still harmless: every
handler's effect is idempotent (stores insert once).

Held messages: a peer's claim and its first receipt or reservation usually
arrive together, while the registry check takes a chain round trip, so a
message from a sender whose claim is under check waits up to
`HOLD_SECONDS` and is processed once the claim verifies (dropped as
unverified if it does not).

Claims lost: the host drops channel messages for a plugin that is not up
yet, so a peer may never have seen our claim. A message from a sender we
know nothing of (no verified identity, no claim under check) is answered
with our own claim, so that sender learns us too: at most once per
`CLAIM_SPACING_SECONDS` in all and once per sender per
`CLAIM_REFRESH_SECONDS` (the period of the claim refresh that would reach it
anyway), so a flood of unknown senders makes a trickle of claims.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from google.protobuf.message import DecodeError, Message

from mesh_x402._pb.mesh_x402.v1 import gossip_pb2 as gpb
from mesh_x402.core.receipts import sign_digest
from mesh_x402.core.verify import KEYS, recover_signer
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.channels import Channel, ChannelMessage
from mesh_x402.mesh.identities import Claim, Identities, Verdict
from mesh_x402.store.receipts import PeerIdentity

__all__ = [
    "CLAIM_REFRESH_SECONDS",
    "CLAIM_SPACING_SECONDS",
    "CONTENT_TYPE",
    "DEDUP_CAPACITY",
    "DEDUP_SECONDS",
    "DOMAIN_PREFIX",
    "HOLD_SECONDS",
    "KIND",
    "MAX_AGE_MS",
    "MAX_HELD",
    "MAX_MESSAGE_BYTES",
    "MAX_SKEW_MS",
    "Dedup",
    "Gossip",
    "Handler",
    "Inbound",
    "gossip_digest",
]

DOMAIN_PREFIX: Final = b"mesh-x402/gossip/v1"
KIND: Final = "x402.gossip"
CONTENT_TYPE: Final = "application/x-protobuf"
MAX_MESSAGE_BYTES: Final = 16 * 1024
MAX_AGE_MS: Final = 120_000
MAX_SKEW_MS: Final = 30_000
DEDUP_SECONDS: Final = (MAX_AGE_MS + MAX_SKEW_MS) / 1000 + 30
DEDUP_CAPACITY: Final = 8192
HOLD_SECONDS: Final = 30.0
MAX_HELD: Final = 256
_MAX_HELD_PER_SENDER: Final = 16
CLAIM_REFRESH_SECONDS: Final = 60.0
CLAIM_SPACING_SECONDS: Final = 1.0
_PEER_ID: Final = re.compile(r"^[0-9a-f]{64}$")
# The store keeps agentIds as SQLite integers; ERC-8004 mints them from 0 upwards.
_MAX_AGENT_ID: Final = 2**63 - 1

_TYPES: Final[Mapping[str, int]] = {
    "identity_claim": gpb.MESSAGE_TYPE_IDENTITY_CLAIM,
    "nonce_reservation": gpb.MESSAGE_TYPE_NONCE_RESERVATION,
    "receipt": gpb.MESSAGE_TYPE_RECEIPT,
    "receipt_ack": gpb.MESSAGE_TYPE_RECEIPT_ACK,
    "settlement_notice": gpb.MESSAGE_TYPE_SETTLEMENT_NOTICE,
}

_log = get_logger("gossip")


def gossip_digest(payload: bytes) -> bytes:
    """What a gossip signature signs: keccak256 of the domain prefix and the payload."""
    return keccak(DOMAIN_PREFIX + payload)


class Dedup:
    """Message hashes seen lately: at most `capacity`, each for `ttl` seconds."""

    def __init__(self, *, capacity: int = DEDUP_CAPACITY, ttl: float = DEDUP_SECONDS) -> None:
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl

    def __len__(self) -> int:
        return len(self._seen)

    def first_sight(self, key: bytes, now: float) -> bool:
        """True the first time `key` is offered within its lifetime; remembers it."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now + self._ttl
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


@dataclass(frozen=True)
class Inbound:
    """A verified message from a verified sender."""

    message: gpb.GossipMessage
    sender: PeerIdentity
    digest: bytes


Handler = Callable[[Inbound], Awaitable[None]]


@dataclass(frozen=True)
class _Held:
    deadline: float
    message: gpb.GossipMessage
    signer: str
    raw: bytes
    digest: bytes


class Gossip:
    """This node's end of the signed `x402.v1` gossip.

    Args:
        channel: the host channel.
        secret: the node's EVM signing key (32 bytes).
        agent_id: this node's ERC-8004 agentId.
        chain_id: the chain the mesh settles on (messages for another are dropped).
        registry: the ERC-8004 identity registry address claims must name.
        local_peer_id: returns this node's mesh-llm peer id once the host told it.
        identities: the verified identities of peers.
        counters: drop/accept counters by reason (shared with `identities`).
        clock: unix time in seconds.
        dedup_capacity: how many message hashes the dedup keeps at most.
        claim_refresh: how often this node claims anyway; an unknown sender is
            answered with our claim at most once in that time.
    """

    def __init__(
        self,
        channel: Channel,
        secret: bytes,
        *,
        agent_id: int,
        chain_id: int,
        registry: str,
        local_peer_id: Callable[[], str | None],
        identities: Identities,
        counters: Counter[str],
        clock: Callable[[], float] = time.time,
        dedup_capacity: int = DEDUP_CAPACITY,
        claim_refresh: float = CLAIM_REFRESH_SECONDS,
    ) -> None:
        self._channel = channel
        self._secret = secret
        self.address: str = KEYS.PrivateKey(secret).public_key.to_checksum_address()
        self.agent_id = agent_id
        self.chain_id = chain_id
        self._registry = bytes.fromhex(registry.removeprefix("0x"))
        self._local_peer_id = local_peer_id
        self._identities = identities
        self.counters = counters
        self._clock = clock
        self._dedup = Dedup(capacity=dedup_capacity)
        self._handlers: dict[str, Handler] = {}
        self._held: dict[int, deque[_Held]] = {}
        self._held_count = 0
        self._claims_checking: dict[Claim, bytes] = {}
        # Agents we answered with our own claim once they verified (bounded by
        # the registry: only registered agents verify).
        self._answered: set[int] = set()
        # Unknown senders answered with our claim, oldest first, and when. Answers
        # are CLAIM_SPACING_SECONDS apart and entries leave after claim_refresh, so
        # this holds at most claim_refresh / CLAIM_SPACING_SECONDS + 1 of them.
        self._answered_unknown: OrderedDict[int, float] = OrderedDict()
        self._last_answer = float("-inf")
        self._claim_refresh = claim_refresh
        identities.on_verdict(self._on_verdict)

    def on(self, body: str, handler: Handler) -> None:
        """Hand verified messages whose body field is `body` (e.g. "receipt") to `handler`."""
        if body not in _TYPES or body == "identity_claim":
            raise ValueError(f"no handler can be set for gossip body {body!r}")
        self._handlers[body] = handler

    # -- sending --------------------------------------------------------------

    def _seal(self, body: str, content: Message) -> bytes:
        message = gpb.GossipMessage(
            type=_TYPES[body],  # type: ignore[arg-type]
            sender_agent_id=self.agent_id,
            sender_peer_id=self._local_peer_id() or "",
            chain_id=self.chain_id,
            timestamp_ms=int(self._clock() * 1000),
            message_id=os.urandom(16),
        )
        getattr(message, body).CopyFrom(content)
        payload = message.SerializeToString()
        signature = sign_digest(self._secret, gossip_digest(payload))
        return gpb.SignedMessage(payload=payload, signature=signature).SerializeToString()

    async def publish(self, body: str, content: Message) -> bytes:
        """Sign and broadcast one message; returns its hash (the dedup key).

        Args:
            body: the GossipMessage body field ("receipt", "receipt_ack", ...).
            content: the body message (e.g. a `gossip_pb2.Receipt`).
        """
        raw = self._seal(body, content)
        digest = keccak(raw)
        # Our own message coming back through a peer is not processed again.
        self._dedup.first_sight(digest, self._clock())
        await self._channel.send(raw, kind=KIND, content_type=CONTENT_TYPE)
        return digest

    async def claim(self) -> bool:
        """Broadcast this node's identity claim; False while our peer id is unknown."""
        peer_id = self._local_peer_id()
        if not peer_id:
            return False
        await self.publish(
            "identity_claim",
            gpb.IdentityClaim(
                peer_id=peer_id,
                agent_id=self.agent_id,
                identity_registry=self._registry,
                chain_id=self.chain_id,
                signer=bytes.fromhex(self.address[2:]),
            ),
        )
        _log.info(Event.IDENTITY_CLAIMED, agent_id=self.agent_id, peer_id=peer_id)
        return True

    # -- receiving ------------------------------------------------------------

    def _drop(self, reason: str, **fields: object) -> None:
        self.counters[reason] += 1
        count = self.counters[reason]
        # Logged at first and then at powers of two: a flood cannot flood the log.
        if count <= 10 or count & (count - 1) == 0:
            _log.warning(Event.GOSSIP_DROPPED, reason=reason, count=count, **fields)

    async def receive(self, message: ChannelMessage) -> None:
        """Check one channel message and act on it (subscribe this to the channel)."""
        raw = message.body
        hint = message.source_peer_id  # logged as the host's claim only, never trusted
        if len(raw) > MAX_MESSAGE_BYTES:
            self._drop("too_large", source=hint, size=len(raw))
            return
        now = self._clock()
        digest = keccak(raw)
        if not self._dedup.first_sight(digest, now):
            self.counters["duplicate"] += 1
            return
        opened = self._open(raw, now, hint)
        if opened is None:
            return
        gossip, signer = opened
        if signer == self.address:
            self.counters["own_message"] += 1
            return
        if gossip.WhichOneof("body") == "identity_claim":
            await self._on_claim(gossip, signer, raw)
            return
        await self._from_sender(_Held(now + HOLD_SECONDS, gossip, signer, raw, digest))

    def _open(self, raw: bytes, now: float, hint: str) -> tuple[gpb.GossipMessage, str] | None:
        """Decode, check the envelope, recover the signer; None once dropped."""
        try:
            signed = gpb.SignedMessage.FromString(raw)
            gossip = gpb.GossipMessage.FromString(signed.payload)
        except DecodeError:
            self._drop("undecodable", source=hint)
            return None
        reason = self._check_envelope(gossip, now)
        if reason is not None:
            self._drop(reason, source=hint, sender_agent_id=gossip.sender_agent_id)
            return None
        signer = recover_signer(gossip_digest(signed.payload), signed.signature)
        if signer is None:
            self._drop("bad_signature", source=hint, sender_agent_id=gossip.sender_agent_id)
            return None
        return gossip, signer

    def _check_envelope(self, gossip: gpb.GossipMessage, now: float) -> str | None:
        """The first envelope rule `gossip` breaks, in order, or None."""
        age_ms = int(now * 1000) - gossip.timestamp_ms
        body = gossip.WhichOneof("body")
        rules = (
            (gossip.chain_id != self.chain_id, "wrong_chain"),
            (age_ms > MAX_AGE_MS, "stale"),
            (-age_ms > MAX_SKEW_MS, "future"),
            (body is None or _TYPES[body] != gossip.type, "bad_body"),
            (not _PEER_ID.match(gossip.sender_peer_id), "bad_peer_id"),
            (gossip.sender_agent_id > _MAX_AGENT_ID, "bad_agent_id"),
        )
        return next((reason for broken, reason in rules if broken), None)

    async def _from_sender(self, held: _Held) -> None:
        agent_id = held.message.sender_agent_id
        identity = self._identities.get(agent_id)
        if identity is None:
            if self._identities.refresh(agent_id):
                self._hold(agent_id, held)
            else:
                self._drop("unverified_sender", sender_agent_id=agent_id)
                await self._answer_unknown(agent_id)
            return
        if identity.signer.lower() != held.signer.lower():
            self._drop("signer_mismatch", sender_agent_id=agent_id, signer=held.signer)
            return
        if identity.peer_id != held.message.sender_peer_id:
            self._drop("peer_mismatch", sender_agent_id=agent_id)
            return
        await self._accept(held, identity)

    async def _answer_unknown(self, agent_id: int) -> None:
        """Send our claim for a sender we know nothing of: it may have missed ours too."""
        now = self._clock()
        answered = self._answered_unknown
        while answered and next(iter(answered.values())) + self._claim_refresh <= now:
            answered.popitem(last=False)
        if agent_id in answered or now - self._last_answer < CLAIM_SPACING_SECONDS:
            return
        answered[agent_id] = now
        self._last_answer = now
        try:
            await self.claim()
        except (ConnectionError, RuntimeError) as exc:
            _log.warning(Event.GOSSIP_DROPPED, reason="claim_not_sent", error=repr(exc))

    def _hold(self, agent_id: int, held: _Held) -> None:
        queue = self._held.setdefault(agent_id, deque())
        if self._held_count >= MAX_HELD or len(queue) >= _MAX_HELD_PER_SENDER:
            self._drop("hold_full", sender_agent_id=agent_id)
            return
        queue.append(held)
        self._held_count += 1
        self.counters["held"] += 1
        _log.info(Event.GOSSIP_HELD, sender_agent_id=agent_id, held=self._held_count)

    async def _accept(self, held: _Held, identity: PeerIdentity) -> None:
        body = held.message.WhichOneof("body") or ""
        self.counters[f"accepted_{body}"] += 1
        # Re-flood first: peers beyond our direct links must get it even if
        # our own handling of it fails.
        await self._channel.send(held.raw, kind=KIND, content_type=CONTENT_TYPE)
        handler = self._handlers.get(body)
        if handler is not None:
            await handler(Inbound(message=held.message, sender=identity, digest=held.digest))

    async def _on_claim(self, gossip: gpb.GossipMessage, signer: str, raw: bytes) -> None:
        claim = gossip.identity_claim
        consistent = (
            claim.agent_id == gossip.sender_agent_id
            and claim.peer_id == gossip.sender_peer_id
            and len(claim.signer) == 20
            and to_checksum_address(claim.signer) == signer
            and claim.chain_id == self.chain_id
            and claim.identity_registry == self._registry
        )
        if not consistent:
            self._drop("bad_claim", sender_agent_id=gossip.sender_agent_id)
            return
        facts = Claim(
            agent_id=claim.agent_id,
            peer_id=claim.peer_id,
            signer=signer,
            chain_id=claim.chain_id,
            registry="0x" + claim.identity_registry.hex(),
        )
        if self._identities.is_known(facts):
            self.counters["accepted_identity_claim"] += 1
            await self._channel.send(raw, kind=KIND, content_type=CONTENT_TYPE)
            return
        if facts not in self._claims_checking and self._identities.submit(facts):
            self._claims_checking[facts] = raw

    async def _on_verdict(self, claim: Claim, verdict: Verdict) -> None:
        raw = self._claims_checking.pop(claim, None)
        queue = self._held.pop(claim.agent_id, deque())
        self._held_count -= len(queue)
        if verdict is Verdict.VERIFIED:
            self.counters["accepted_identity_claim"] += 1
            if raw is not None:
                await self._channel.send(raw, kind=KIND, content_type=CONTENT_TYPE)
            if claim.agent_id not in self._answered:
                # A peer we did not know may not know us either (its plugin
                # may have started after our claim went out).
                self._answered.add(claim.agent_id)
                await self.claim()
        now = self._clock()
        for held in queue:
            if verdict is Verdict.VERIFIED and held.deadline > now:
                await self._from_sender(held)
            else:
                self._drop("unverified_sender", sender_agent_id=claim.agent_id)
