"""Telling peers that this node runs mesh-x402.

A `hello` goes to each peer the host reports as up (the node-start snapshot
included), so both ends of a new link learn that the other runs the plugin
and which version. It carries no authority (the host does
not authenticate `source_peer_id`); the signed identity claim the payment
layer needs travels the same way and is not this message.
"""

from __future__ import annotations

import json
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.mesh.channels import Channel
from mesh_x402.mesh.view import MeshView

__all__ = ["HELLO_KIND", "Presence"]

HELLO_KIND: Final = "hello"


class Presence:
    """Sends `hello` to each peer reported up.

    Args:
        channel: where hellos go.
        view: the mesh view, already updated with the event (gives our peer id).
        version: this plugin's version, told to peers.
    """

    def __init__(self, channel: Channel, view: MeshView, version: str) -> None:
        self._channel = channel
        self._view = view
        self._version = version

    async def on_event(self, event: pb.MeshEvent) -> None:
        if event.kind != pb.MeshEvent.KIND_PEER_UP or not event.peer.peer_id:
            return
        body = json.dumps(
            {"peer_id": self._view.local_peer_id, "version": self._version},
            separators=(",", ":"),
        ).encode()
        await self._channel.send(body, kind=HELLO_KIND, target=event.peer.peer_id)
