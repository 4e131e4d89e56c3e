"""Sending and receiving on the plugin's mesh channel (`x402.v1`).

The host relays a channel frame to the same-named plugin on every directly
connected peer (or to one target), fills in `source_peer_id`, and drops
frames over 10,000,000 bytes on the receiving side without telling the
sender. So messages are kept small here, and `source_peer_id` is passed on
only as a hint: the host does not authenticate it, so anything a receiver
believes about the origin must come from a signature inside the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.manifest import CHANNEL

__all__ = ["MAX_BODY_BYTES", "Channel", "ChannelMessage", "Receiver", "Sender"]

# Far below the host's 10 MB drop limit: channel traffic is gossip (claims,
# reservations, receipts), never bulk data.
MAX_BODY_BYTES: Final = 256 * 1024

_log = get_logger("channel")

Sender = Callable[[pb.Envelope], Awaitable[None]]


@dataclass(frozen=True)
class ChannelMessage:
    """One received channel message.

    `source_peer_id` is what the host says, not a proven origin.
    """

    body: bytes
    kind: str
    source_peer_id: str
    target_peer_id: str
    content_type: str
    correlation_id: str


Receiver = Callable[[ChannelMessage], Awaitable[None]]


class Channel:
    """The `x402.v1` channel: one send call, any number of receivers.

    Args:
        send_frame: writes one envelope to the host (the session's `send`).
    """

    def __init__(self, send_frame: Sender) -> None:
        self._send_frame = send_frame
        self._receivers: list[Receiver] = []

    async def send(
        self,
        body: bytes,
        *,
        kind: str,
        target: str | None = None,
        content_type: str = "application/json",
        correlation_id: str = "",
    ) -> None:
        """Send `body` to one peer (`target`, a peer id) or to every direct peer.

        Raises:
            ValueError: the body is over MAX_BODY_BYTES.
        """
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(
                f"channel message of {len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit"
            )
        await self._send_frame(
            pb.Envelope(
                channel_message=pb.ChannelMessage(
                    channel=CHANNEL,
                    target_peer_id=target or "",
                    content_type=content_type,
                    body=body,
                    message_kind=kind,
                    correlation_id=correlation_id,
                )
            )
        )
        _log.debug(Event.CHANNEL_SENT, kind=kind, target=target, size=len(body))

    def subscribe(self, receiver: Receiver) -> None:
        """Call `receiver` with every message received on the channel."""
        self._receivers.append(receiver)

    async def deliver(self, message: pb.ChannelMessage) -> None:
        """Hand a channel frame from the host to the receivers.

        Frames for another channel or over the size limit are dropped with a
        log line; a failing receiver is logged and does not stop the others.
        """
        if message.channel != CHANNEL:
            _log.warning(Event.CHANNEL_DROPPED, channel=message.channel, reason="unknown_channel")
            return
        if len(message.body) > MAX_BODY_BYTES:
            _log.warning(
                Event.CHANNEL_DROPPED,
                source=message.source_peer_id,
                size=len(message.body),
                reason="too_large",
            )
            return
        received = ChannelMessage(
            body=message.body,
            kind=message.message_kind,
            source_peer_id=message.source_peer_id,
            target_peer_id=message.target_peer_id,
            content_type=message.content_type,
            correlation_id=message.correlation_id,
        )
        _log.info(
            Event.CHANNEL_RECEIVED,
            kind=received.kind,
            source=received.source_peer_id,
            size=len(received.body),
        )
        for receiver in self._receivers:
            try:
                await receiver(received)
            except Exception as exc:  # noqa: BLE001 - one bad receiver must not silence the rest
                _log.error(Event.CHANNEL_RECEIVER_FAILED, kind=received.kind, error=repr(exc))
