"""Verified peer identities: which agentId is which peer, signing with which key.

A peer's identity claim ("agentId N is peer P and signs as S") is a signed
statement anyone can make, so it counts only once the ERC-8004 identity
registry agrees: metadata `mesh-llm.peer-id` of N is P, and S is N's
agentWallet or its metadata `mesh-llm.signer`. A node claiming another
node's agentId fails that check (the registry names the other peer or the
other signer) and is ignored; the identity already verified for that agentId
stays.

Chain reads are off the hot path: a claim is checked by a background task
(the registry binding is blocking web3, so it runs in a thread), at most a
few at a time, and the result is cached with an expiry and kept in the
store, so a respawned plugin trusts its peers again at once. An expired
identity is re-checked from its last claim the next time it is needed.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from mesh_x402.log import Event, get_logger
from mesh_x402.store.receipts import PeerIdentity, ReceiptStore

if TYPE_CHECKING:
    from mesh_x402.chain.bindings import IdentityRegistryBinding

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_CHECKS_IN_FLIGHT",
    "Claim",
    "ClaimVerifier",
    "Identities",
    "Listener",
    "RegistryVerifier",
    "Verdict",
]

DEFAULT_TTL_SECONDS: Final = 600.0
MAX_CHECKS_IN_FLIGHT: Final = 8
# Distinct claims waiting for a check; a flood of made-up claims beyond this is dropped.
_MAX_QUEUED: Final = 256

_log = get_logger("gossip")


@dataclass(frozen=True)
class Claim:
    """An identity claim whose signature was checked (`signer` signed it)."""

    agent_id: int
    peer_id: str
    signer: str
    chain_id: int
    registry: str


class Verdict(enum.Enum):
    """What the registry says about a claim."""

    VERIFIED = "verified"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"
    """The chain did not answer: neither trusted nor refused; asked again later."""


class ClaimVerifier(Protocol):
    """Checks a claim against the identity registry (blocking: called in a thread)."""

    def verify(self, claim: Claim) -> Verdict:
        """VERIFIED when the registry binds the claim's agentId to its peer id and signer."""
        ...


class RegistryVerifier:
    """The ERC-8004 registry check, through the chain layer's binding."""

    def __init__(self, registry: IdentityRegistryBinding) -> None:
        self._registry = registry

    def verify(self, claim: Claim) -> Verdict:
        from eth_utils.address import to_canonical_address  # noqa: PLC0415 - web3 stack, lazily

        from mesh_x402.chain.bindings import PEER_ID_KEY, SIGNER_KEY  # noqa: PLC0415
        from mesh_x402.errors import ChainError  # noqa: PLC0415

        registry = self._registry
        try:
            if not registry.exists(claim.agent_id):
                return Verdict.REFUSED
            if registry.get_metadata(claim.agent_id, PEER_ID_KEY) != bytes.fromhex(claim.peer_id):
                return Verdict.REFUSED
            wallet = registry.get_agent_wallet(claim.agent_id)
            if wallet is not None and wallet.lower() == claim.signer.lower():
                return Verdict.VERIFIED
            signer = registry.get_metadata(claim.agent_id, SIGNER_KEY)
            if signer == to_canonical_address(claim.signer):
                return Verdict.VERIFIED
        except ChainError as exc:
            _log.warning(Event.IDENTITY_CHECK_UNAVAILABLE, agent_id=claim.agent_id, error=str(exc))
            return Verdict.UNAVAILABLE
        return Verdict.REFUSED


Listener = Callable[[Claim, Verdict], Awaitable[None]]


class Identities:
    """The verified identities of this node's peers, checked in the background.

    Args:
        verifier: the registry check.
        store: where verified identities are kept across restarts (None: memory only).
        counters: drop and check counters shared with the gossip layer.
        ttl: how long a verified identity is trusted before it is checked again.
        clock: unix time in seconds.
    """

    def __init__(
        self,
        verifier: ClaimVerifier,
        store: ReceiptStore | None,
        counters: Counter[str],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._store = store
        self._counters = counters
        self._ttl = ttl
        self._clock = clock
        self._verified: dict[int, PeerIdentity] = {}
        self._claims: dict[int, Claim] = {}  # the last claim behind each verified identity
        self._checking: dict[Claim, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(MAX_CHECKS_IN_FLIGHT)
        self._listeners: list[Listener] = []

    def restore(self) -> int:
        """Trust again the identities kept in the store that have not expired; how many."""
        if self._store is None:
            return 0
        for identity in self._store.identities(now=self._clock()):
            self._verified[identity.agent_id] = identity
            self._claims[identity.agent_id] = Claim(
                identity.agent_id,
                identity.peer_id,
                identity.signer,
                identity.chain_id,
                identity.registry,
            )
        return len(self._verified)

    def on_verdict(self, listener: Listener) -> None:
        """Call `listener(claim, verdict)` after each background check."""
        self._listeners.append(listener)

    def get(self, agent_id: int) -> PeerIdentity | None:
        """The verified, unexpired identity of `agent_id`, or None."""
        identity = self._verified.get(agent_id)
        if identity is None or identity.expires_at <= self._clock():
            return None
        return identity

    def by_peer(self, peer_id: str) -> PeerIdentity | None:
        """The verified, unexpired identity whose peer id is `peer_id`, or None."""
        now = self._clock()
        for identity in self._verified.values():
            if identity.peer_id == peer_id and identity.expires_at > now:
                return identity
        return None

    def pending(self, agent_id: int) -> bool:
        """Whether a check of a claim for `agent_id` is under way."""
        return any(claim.agent_id == agent_id for claim in self._checking)

    def refresh(self, agent_id: int) -> bool:
        """Re-check an expired identity from its last claim; True if a check is under way."""
        claim = self._claims.get(agent_id)
        if claim is not None and self.get(agent_id) is None:
            self.submit(claim)
        return self.pending(agent_id)

    def is_known(self, claim: Claim) -> bool:
        """Whether exactly this claim is verified and unexpired (no check needed)."""
        identity = self.get(claim.agent_id)
        return (
            identity is not None
            and identity.peer_id == claim.peer_id
            and identity.signer.lower() == claim.signer.lower()
        )

    def submit(self, claim: Claim) -> bool:
        """Start a background check of `claim` unless it is known or under way.

        Returns:
            False when the claim was dropped because too many checks are queued.
        """
        if self.is_known(claim) or claim in self._checking:
            return True
        if len(self._checking) >= _MAX_QUEUED:
            self._counters["claim_queue_full"] += 1
            return False
        self._checking[claim] = asyncio.ensure_future(self._check(claim))
        return True

    async def _check(self, claim: Claim) -> None:
        try:
            try:
                async with self._slots:
                    verdict = await asyncio.to_thread(self._verifier.verify, claim)
            except Exception as exc:  # noqa: BLE001 - a broken check must not kill the task silently
                _log.error(
                    Event.IDENTITY_CHECK_UNAVAILABLE, agent_id=claim.agent_id, error=repr(exc)
                )
                verdict = Verdict.UNAVAILABLE
            if verdict is Verdict.VERIFIED:
                await self._accept(claim)
            elif verdict is Verdict.REFUSED:
                self._counters["claim_refused"] += 1
                _log.warning(
                    Event.IDENTITY_REFUSED,
                    agent_id=claim.agent_id,
                    peer_id=claim.peer_id,
                    signer=claim.signer,
                )
        finally:
            del self._checking[claim]
        for listener in self._listeners:
            try:
                await listener(claim, verdict)
            except Exception as exc:  # noqa: BLE001 - one listener's bug must not hide the verdict
                _log.error(Event.GOSSIP_DROPPED, reason="verdict_listener_failed", error=repr(exc))

    async def _accept(self, claim: Claim) -> None:
        now = self._clock()
        identity = PeerIdentity(
            agent_id=claim.agent_id,
            peer_id=claim.peer_id,
            signer=claim.signer,
            chain_id=claim.chain_id,
            registry=claim.registry,
            verified_at=now,
            expires_at=now + self._ttl,
        )
        self._verified[claim.agent_id] = identity
        self._claims[claim.agent_id] = claim
        self._counters["claim_verified"] += 1
        if self._store is not None:
            await asyncio.to_thread(self._store.save_identity, identity)
        _log.info(
            Event.IDENTITY_VERIFIED,
            agent_id=claim.agent_id,
            peer_id=claim.peer_id,
            signer=claim.signer,
        )

    async def drain(self) -> None:
        """Wait until no check is under way (and its listeners ran)."""
        while self._checking:
            await asyncio.gather(*list(self._checking.values()), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the checks under way."""
        tasks = list(self._checking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
