"""Test kit for the gossip tests: a channel outbox and a settable clock."""

from __future__ import annotations

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb


class Outbox:
    """Stands in for the host session: keeps the channel messages a node sends."""

    def __init__(self) -> None:
        self.sent: list[pb.ChannelMessage] = []

    async def __call__(self, envelope: pb.Envelope) -> None:
        self.sent.append(envelope.channel_message)

    @property
    def bodies(self) -> list[bytes]:
        return [message.body for message in self.sent]


class Clock:
    """Unix time that moves only when a test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
