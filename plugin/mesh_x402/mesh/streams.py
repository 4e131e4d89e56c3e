"""Answering the host's OpenStreamRequest for our streamed HTTP bindings.

When a client calls one of our bindings on the management port, the host
asks us where to send the raw HTTP/1.1 request. We answer with the Unix
socket our HTTP app listens on; the host connects, writes the request, half
closes and relays our response. Only HTTP1 streams for a binding we declared
are accepted: anything else (a 0.76 plugin-to-plugin stream, a binding id we
never declared) is refused with a reason, which the host reports.

The socket may not be listening yet right after initialize (the HTTP stack
is imported after the handshake); a request then waits for it, well inside
the host's 30-second request timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.manifest import BINDINGS

__all__ = ["StreamNegotiator"]

_log = get_logger("host")
_DECLARED: Final = frozenset(binding.binding_id for binding in BINDINGS)


class StreamNegotiator:
    """Decides on OpenStreamRequests and names the socket to connect to.

    Args:
        ready_timeout: how long a request waits for the HTTP socket to listen.
    """

    def __init__(self, ready_timeout: float = 20.0) -> None:
        self._endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ready_timeout = ready_timeout

    def set_endpoint(self, socket_path: str) -> None:
        """Called once the HTTP app listens on `socket_path`."""
        self._endpoint.set_result(socket_path)

    async def open(self, request: pb.OpenStreamRequest) -> pb.OpenStreamResponse:
        """The reply to one OpenStreamRequest (accepted or refused, never raised)."""
        refusal = _refusal(request)
        if refusal is None:
            try:
                endpoint = await asyncio.wait_for(
                    asyncio.shield(self._endpoint), self._ready_timeout
                )
            except asyncio.TimeoutError:
                refusal = "the HTTP socket is not listening yet"
            else:
                _log.info(Event.STREAM_OPENED, stream_id=request.stream_id)
                return pb.OpenStreamResponse(
                    stream_id=request.stream_id,
                    accepted=True,
                    transport_kind=pb.STREAM_TRANSPORT_KIND_UNIX_SOCKET,
                    endpoint=endpoint,
                )
        _log.warning(Event.STREAM_REFUSED, stream_id=request.stream_id, reason=refusal)
        return pb.OpenStreamResponse(stream_id=request.stream_id, accepted=False, message=refusal)


def _refusal(request: pb.OpenStreamRequest) -> str | None:
    """Why `request` is refused, or None when it is one of our bindings."""
    if request.mode != pb.STREAM_MODE_HTTP1:
        return f"only HTTP1 streams are served, not mode {request.mode}"
    try:
        metadata = json.loads(request.metadata_json) if request.metadata_json else None
    except ValueError:
        return "metadata_json is not JSON"
    binding_id = metadata.get("binding_id") if isinstance(metadata, dict) else None
    if binding_id not in _DECLARED:
        return f"no streamed binding with id {binding_id!r}"
    return None
