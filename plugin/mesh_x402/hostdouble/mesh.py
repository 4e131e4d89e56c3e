"""Mesh: several host doubles linked as mesh-llm peers, relaying the plugin channel.

Channel relay follows mesh-llm: only channels the sending plugin declared
leave the node and only channels the receiving plugin declared reach it;
the host fills `source_peer_id` when empty; each message gets an id that
every node remembers for 120 s (duplicates are dropped, and the sender's own
node never gets its message back); delivery is to the plugin with the same
name only, and only if the target is empty or exactly this node's peer id.
Broadcasts reach direct peers only; a targeted message goes at most two
hops. A receiving node drops a frame over 10,000,000 bytes.

Linking or unlinking hosts sends PEER_UP / PEER_DOWN to both plugins.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble.blackboard import BoardItem
from mesh_x402.hostdouble.errors import HostConfigError
from mesh_x402.hostdouble.host import Host

__all__ = ["DEDUP_SECONDS", "MAX_CHANNEL_FRAME_BYTES", "Dedup", "Mesh"]

DEDUP_SECONDS: Final = 120.0
MAX_CHANNEL_FRAME_BYTES: Final = 10_000_000


class Dedup:
    """Message ids one node has seen, each remembered for 120 s."""

    def __init__(self, clock: Callable[[], float], ttl: float = DEDUP_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._expiry: dict[str, float] = {}

    def first_sight(self, message_id: str) -> bool:
        """Record `message_id`; True if it was not seen in the last 120 s."""
        now = self._clock()
        for key in [key for key, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]
        if message_id in self._expiry:
            return False
        self._expiry[message_id] = now + self._ttl
        return True


class Mesh:
    """Links host doubles as direct peers (all pairs by default, or the given links).

    Args:
        hosts: the nodes; their peer ids must be distinct.
        links: index pairs that are direct peers; None links every pair.
        clock: monotonic seconds for the dedup window.

    Raises:
        HostConfigError: duplicate peer ids or a link naming no host.
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        links: Iterable[tuple[int, int]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hosts = list(hosts)
        peer_ids = [host.peer_id for host in self.hosts]
        if len(set(peer_ids)) != len(peer_ids):
            raise HostConfigError("Mesh: hosts must have distinct peer ids")
        pairs = itertools.combinations(range(len(self.hosts)), 2) if links is None else links
        self._links: set[frozenset[int]] = set()
        for a, b in pairs:
            self._check_pair(a, b)
            self._links.add(frozenset((a, b)))
        self._dedup = {host.peer_id: Dedup(clock) for host in self.hosts}
        self.dropped: list[tuple[str, str]] = []
        for host in self.hosts:
            host.mesh = self

    def _check_pair(self, a: int, b: int) -> None:
        if a == b or not (0 <= a < len(self.hosts) and 0 <= b < len(self.hosts)):
            raise HostConfigError(f"Mesh: link ({a}, {b}) does not join two of the hosts")

    def neighbours(self, host: Host) -> list[Host]:
        """The direct peers of `host`."""
        index = self.hosts.index(host)
        return [
            self.hosts[other]
            for other in range(len(self.hosts))
            if frozenset((index, other)) in self._links
        ]

    async def start(self) -> None:
        """Start every host; each snapshot announces its direct peers with PEER_UP.

        Raises:
            PluginStartError: a 0.66 host's plugin failed to start (the others keep running).
        """
        for host in self.hosts:
            for peer in self.neighbours(host):
                host.add_known_peer(peer.local_peer())
        results = await asyncio.gather(
            *(host.start() for host in self.hosts), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        """Stop every host."""
        await asyncio.gather(*(host.stop() for host in self.hosts))

    async def __aenter__(self) -> Mesh:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def link(self, a: int, b: int) -> None:
        """Make hosts `a` and `b` direct peers; both plugins get PEER_UP."""
        self._check_pair(a, b)
        self._links.add(frozenset((a, b)))
        await self.hosts[a].peer_up(self.hosts[b].local_peer())
        await self.hosts[b].peer_up(self.hosts[a].local_peer())

    async def unlink(self, a: int, b: int) -> None:
        """Part hosts `a` and `b`; both plugins get PEER_DOWN."""
        self._check_pair(a, b)
        self._links.discard(frozenset((a, b)))
        await self.hosts[a].peer_down(self.hosts[b].peer_id)
        await self.hosts[b].peer_down(self.hosts[a].peer_id)

    async def stop_host(self, index: int) -> None:
        """Stop one node; its direct peers' plugins get PEER_DOWN."""
        host = self.hosts[index]
        for peer in self.neighbours(host):
            self._links.discard(frozenset((index, self.hosts.index(peer))))
            await peer.peer_down(host.peer_id)
        await host.stop()

    async def announce_update(self, index: int) -> None:
        """Host `index` changed its gossip (models, VRAM): its peers get PEER_UPDATED."""
        host = self.hosts[index]
        for peer in self.neighbours(host):
            await peer.peer_updated(host.local_peer())

    async def relay(self, sender: Host, message: pb.ChannelMessage, plugin_name: str) -> None:
        """Carry a message the sender's plugin sent (declared channel, source filled)."""
        message_id = uuid.uuid4().hex
        self._dedup[sender.peer_id].first_sight(message_id)
        size = message.ByteSize()
        for peer in self.neighbours(sender):
            await self._arrive(peer, message_id, message, plugin_name, size, hops=1)

    async def _arrive(
        self,
        node: Host,
        message_id: str,
        message: pb.ChannelMessage,
        plugin_name: str,
        size: int,
        *,
        hops: int,
    ) -> None:
        if node.state == "stopped":
            return
        if size > MAX_CHANNEL_FRAME_BYTES:
            self._drop(node, "oversize")
            return
        if not self._dedup[node.peer_id].first_sight(message_id):
            self._drop(node, "duplicate")
            return
        target = message.target_peer_id
        if not target or target == node.peer_id:
            copy = pb.ChannelMessage()
            copy.CopyFrom(message)
            await node.deliver_channel(copy, plugin_name)
            return
        forwarded = False
        if hops == 1:
            for peer in self.neighbours(node):
                if peer.peer_id == target:
                    forwarded = True
                    await self._arrive(peer, message_id, message, plugin_name, size, hops=2)
        if not forwarded:
            self._drop(node, "not_target")

    def _drop(self, node: Host, reason: str) -> None:
        self.dropped.append((node.peer_id, reason))

    def board_posted(self, origin: Host, item: BoardItem) -> None:
        """Gossip a post to every other node that serves a blackboard."""
        for host in self.hosts:
            if host is not origin and host.board is not None:
                host.board.add(item)
