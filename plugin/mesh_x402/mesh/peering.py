"""The paid mesh's peer layer, as `serve` runs it: identities, gossip, receipts.

`serve` builds one `Peering` before the host link comes up (nothing here
blocks), feeds it mesh events and channel messages, and calls `prepare`
and then `attach` while it brings up the gate, after the handshake:

- `prepare` connects to the chain for the identity registry (in a thread);
- `attach(journal)` is the gate's `receipts` factory (`open_gate`): the
  receipt store shares the journal's file, so a payment's chargeable state
  and its receipt commit together.

A node without a recorded agentId (`mesh-x402 register` writes
`<state_dir>/identity.json`), or without `[chain] identity_registry` and
`settlement`, takes payments but joins no gossip: it logs why, and peers
never credit it (they cannot verify it).

Claims go out when the gossip starts, when the host names our peer id, and
on PEER_UP (several PEER_UPs in one snapshot make one claim: the first one
goes out at once, the rest within `CLAIM_SPACING_SECONDS`), and again
every `CLAIM_REFRESH_SECONDS` or so: the host drops channel messages for a
plugin that is not up yet, so a claim sent while a peer's plugin was starting
is lost, and without the refresh two nodes that started together could stay
unverified to each other (the gossip also answers unknown senders).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.config import NodeConfig
from mesh_x402.core.ports import ReceiptIssuer
from mesh_x402.core.receipts import ReceiptDomain
from mesh_x402.errors import ChainError, ConfigError
from mesh_x402.keys import NodeKey
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.channels import Channel, ChannelMessage
from mesh_x402.mesh.gossip import CLAIM_REFRESH_SECONDS, CLAIM_SPACING_SECONDS, KIND, Gossip
from mesh_x402.mesh.identities import ClaimVerifier, Identities, RegistryVerifier
from mesh_x402.mesh.receipting import MeshReceipts
from mesh_x402.mesh.view import MeshView
from mesh_x402.state import load_identity
from mesh_x402.store.journal import Journal
from mesh_x402.store.receipts import ReceiptStore

__all__ = ["CLAIM_REFRESH_SECONDS", "CLAIM_SPACING_SECONDS", "EARLY_MESSAGES", "Peering"]

# Channel messages that arrive before the gossip runs (a peer's claim sent
# while our gate was still starting) are kept, this many at most, and
# processed once it runs.
EARLY_MESSAGES: Final = 64

_log = get_logger("gossip")


class Peering:
    """Identities, signed gossip and receipts for one node.

    Args:
        config: the node config.
        key: the node's signing key.
        channel: the host's `x402.v1` channel.
        view: the mesh view (kept up to date by serve).
        verifier: the registry check; by default the chain's (set by `prepare`).
        clock: unix time in seconds.
        claim_refresh: seconds between claims made anyway (give or take a tenth).
    """

    def __init__(
        self,
        config: NodeConfig,
        key: NodeKey,
        channel: Channel,
        view: MeshView,
        *,
        verifier: ClaimVerifier | None = None,
        clock: Callable[[], float] = time.time,
        claim_refresh: float = CLAIM_REFRESH_SECONDS,
    ) -> None:
        self._config = config
        self._key = key
        self._channel = channel
        self._view = view
        self._verifier = verifier
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self.gossip: Gossip | None = None
        self.identities: Identities | None = None
        self.receipts: MeshReceipts | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._claim_refresh = claim_refresh
        self._refresher: asyncio.Task[None] | None = None
        self._early: deque[ChannelMessage] = deque(maxlen=EARLY_MESSAGES)
        self._replay: asyncio.Task[None] | None = None
        self._last_claim = float("-inf")
        self._claimed_as: str | None = None

    @property
    def agent_id(self) -> int | None:
        """This node's agentId once gossip runs."""
        return None if self.gossip is None else self.gossip.agent_id

    def _why_not(self) -> str | None:
        chain = self._config.chain
        if chain.identity_registry is None or chain.settlement is None:
            return "chain.identity_registry and chain.settlement are not both set"
        try:
            identity = load_identity(self._config.state_path)
        except ConfigError as exc:
            return str(exc)
        if identity is None:
            return "no agentId recorded: run `mesh-x402 register`"
        if (
            identity.chain_id != chain.chain_id
            or identity.identity_registry.lower() != chain.identity_registry.lower()
        ):
            return "the recorded agentId belongs to another chain or registry"
        return None

    async def prepare(self) -> None:
        """Connect the registry check to the chain (blocking calls run in a thread)."""
        if self._verifier is not None or self._why_not() is not None:
            return
        chain = self._config.chain
        registry = chain.identity_registry
        assert registry is not None  # checked by _why_not

        def connect() -> ClaimVerifier:
            from mesh_x402.chain.bindings import IdentityRegistryBinding  # noqa: PLC0415
            from mesh_x402.chain.client import ChainClient  # noqa: PLC0415

            client = ChainClient.connect(chain.rpc, chain_id=chain.chain_id)
            return RegistryVerifier(IdentityRegistryBinding(client, registry))

        try:
            self._verifier = await asyncio.to_thread(connect)
        except ChainError as exc:
            _log.warning(Event.IDENTITY_CHECK_UNAVAILABLE, error=str(exc))

    def attach(self, journal: Journal) -> ReceiptIssuer | None:
        """Start gossip and receipts on the gate's journal; None (logged) when this node cannot."""
        reason = self._why_not()
        if reason is None and self._verifier is None:
            reason = "the identity registry is unreachable"
        identity = load_identity(self._config.state_path) if reason is None else None
        if identity is None or self._verifier is None:
            _log.warning(Event.GOSSIP_DISABLED, reason=reason)
            return None
        chain = self._config.chain
        assert chain.identity_registry is not None
        assert chain.settlement is not None
        store = ReceiptStore(journal, clock=self._clock)
        self.identities = Identities(self._verifier, store, self.counters, clock=self._clock)
        restored = self.identities.restore()
        self.gossip = Gossip(
            self._channel,
            self._key.secret,
            agent_id=identity.agent_id,
            chain_id=chain.chain_id,
            registry=chain.identity_registry,
            local_peer_id=lambda: self._view.local_peer_id,
            identities=self.identities,
            counters=self.counters,
            clock=self._clock,
            claim_refresh=self._claim_refresh,
        )
        self.receipts = MeshReceipts(
            config=self._config,
            gossip=self.gossip,
            store=store,
            journal=journal,
            view=self._view,
            identities=self.identities,
            domain=ReceiptDomain(chain.chain_id, chain.settlement),
            secret=self._key.secret,
            clock=self._clock,
        )
        _log.info(Event.GOSSIP_STARTED, agent_id=identity.agent_id, identities=restored)
        self._schedule_claim()
        self._refresher = asyncio.ensure_future(self._refresh_claims())
        self._replay = asyncio.ensure_future(self._receive_early(self.gossip))
        return self.receipts

    async def _receive_early(self, gossip: Gossip) -> None:
        while self._early:
            await gossip.receive(self._early.popleft())

    async def receive(self, message: ChannelMessage) -> None:
        """A channel message (subscribe this to the channel); dropped until gossip runs."""
        if message.kind != KIND:
            self.counters["not_gossip"] += 1  # e.g. presence hellos: no authority, not ours
        elif self.gossip is None:
            self._early.append(message)
        else:
            await self.gossip.receive(message)

    async def on_event(self, event: pb.MeshEvent) -> None:
        """Claim our identity when our peer id becomes known or changes, and when a peer
        comes up (every event carries our peer id: the others do not make a claim)."""
        new_peer_id = bool(event.local_peer_id) and event.local_peer_id != self._claimed_as
        if new_peer_id or event.kind == pb.MeshEvent.KIND_PEER_UP:
            self._schedule_claim()

    async def _refresh_claims(self) -> None:
        # The jitter keeps nodes that started together from claiming in step.
        while True:
            await asyncio.sleep(self._claim_refresh * random.uniform(0.9, 1.1))  # noqa: S311 - not a secret
            self._schedule_claim()

    def _schedule_claim(self) -> None:
        if self.gossip is None or (self._claim_task is not None and not self._claim_task.done()):
            return
        self._claim_task = asyncio.ensure_future(self._claim())

    async def _claim(self) -> None:
        gossip = self.gossip
        assert gossip is not None
        wait = self._last_claim + CLAIM_SPACING_SECONDS - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_claim = self._clock()
        self._claimed_as = self._view.local_peer_id
        try:
            await gossip.claim()
        except (ConnectionError, RuntimeError) as exc:
            _log.warning(Event.GOSSIP_DROPPED, reason="claim_not_sent", error=repr(exc))

    async def drain(self) -> None:
        """Let the work under way finish: claims, early messages, identity checks."""
        for task in (self._claim_task, self._replay):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        if self.identities is not None:
            await self.identities.drain()

    async def aclose(self) -> None:
        """Stop claims and checks, and wait for receipts still being sent."""
        # The refresher first: it could start a claim after that one is stopped.
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        for task in (self._claim_task, self._replay):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.receipts is not None:
            await self.receipts.aclose()
        if self.identities is not None:
            await self.identities.aclose()
