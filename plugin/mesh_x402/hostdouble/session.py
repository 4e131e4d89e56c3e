"""One framed connection to a plugin: send, read, match replies by request id.

The session owns no policy: it reports why it ended (EOF, idle timeout, a
bad frame) and hands every envelope that is not a reply to a callback. The
host decides what to kill and respawn.

What counts as a reply follows mesh-llm: anything the plugin sends that is
not a channel or bulk message, an RpcRequest, an RpcNotification or (0.76)
an OpenMeshStreamRequest. An empty envelope with request id 0 is an
"unsolicited reply" (a keepalive), logged and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.errors import FrameError
from mesh_x402.hostdouble.errors import PluginUnavailableError
from mesh_x402.mesh.framing import FrameDecoder, encode_frame

__all__ = [
    "END_BAD_FRAME",
    "END_EOF",
    "END_IDLE",
    "UNSOLICITED_PAYLOADS",
    "VIOLATION_FOREIGN_ID",
    "VIOLATION_SPLIT_FRAME",
    "Session",
]

END_EOF: Final = "eof"
END_IDLE: Final = "idle"
END_BAD_FRAME: Final = "bad_frame"

UNSOLICITED_PAYLOADS: Final = frozenset(
    {
        "channel_message",
        "bulk_transfer_message",
        "rpc_request",
        "rpc_notification",
        "open_mesh_stream_request",
    }
)
_READ_CHUNK: Final = 256 * 1024

Handler = Callable[["Session", pb.Envelope], Awaitable[None]]
Observer = Callable[[str], None]

# Plugin habits a real host does not forgive, reported to `on_violation`:
VIOLATION_SPLIT_FRAME: Final = "split_frame"  # a length prefix that arrived alone
VIOLATION_FOREIGN_ID: Final = "foreign_plugin_id"  # plugin_id neither empty nor the name
_PREFIX_BYTES: Final = 4


class Session:
    """A framed, request-matching connection to one plugin process.

    Args:
        reader, writer: the accepted Unix socket connection.
        on_message: awaited with (session, envelope) for each unsolicited
            envelope, in arrival order.
        idle_timeout: seconds allowed with no frame starting (None: unlimited).
        body_timeout: seconds allowed for the rest of a frame once it started.
        accepts_mesh_streams: 0.76 takes OpenMeshStreamRequest as a request,
            0.66 takes it as a (stray) reply.
        plugin_name: the configured name; frames may carry it or nothing.
        on_violation: called with a VIOLATION_* name when the plugin does
            something mesh-llm's reader is not safe against. A prefix
            written apart from its body is one: the host's reader may
            misread a frame that arrives in pieces while it is sending.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_message: Handler,
        idle_timeout: float | None,
        body_timeout: float,
        accepts_mesh_streams: bool,
        plugin_name: str = "",
        on_violation: Observer | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_message = on_message
        self._idle_timeout = idle_timeout
        self._body_timeout = body_timeout
        self._unsolicited = (
            UNSOLICITED_PAYLOADS
            if accepts_mesh_streams
            else UNSOLICITED_PAYLOADS - {"open_mesh_stream_request"}
        )
        self._plugin_name = plugin_name
        self._on_violation = on_violation
        self._pending: dict[int, asyncio.Future[pb.Envelope]] = {}
        self._send_lock = asyncio.Lock()
        self._closed = False
        self.end_reason: str | None = None
        self.end_detail = ""
        self.keepalives = 0
        self.stray_replies: list[pb.Envelope] = []

    @property
    def closed(self) -> bool:
        """True once the connection has ended or was closed."""
        return self._closed

    async def send(self, envelope: pb.Envelope) -> None:
        """Write one frame in a single write (the prefix never travels alone).

        Raises:
            PluginUnavailableError: the connection is closed or broke.
        """
        if self._closed:
            raise PluginUnavailableError("the plugin connection is closed")
        frame = encode_frame(envelope)
        async with self._send_lock:
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise PluginUnavailableError(f"the plugin connection broke: {exc}") from None

    async def call(self, envelope: pb.Envelope, timeout: float) -> pb.Envelope:
        """Send a request and wait for the reply with the same request id.

        Raises:
            asyncio.TimeoutError: no reply within `timeout`.
            PluginUnavailableError: the connection ended first.
        """
        request_id = envelope.request_id
        future: asyncio.Future[pb.Envelope] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(envelope)
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()

    async def run(self) -> str:
        """Read frames until the connection ends; return why (END_*)."""
        decoder = FrameDecoder()
        try:
            while True:
                timeout = self._idle_timeout if decoder.pending_bytes == 0 else self._body_timeout
                try:
                    data = await asyncio.wait_for(self._reader.read(_READ_CHUNK), timeout)
                except asyncio.TimeoutError:
                    if decoder.pending_bytes == 0:
                        return self._end(END_IDLE, f"no frame for {timeout:g} s")
                    return self._end(END_BAD_FRAME, f"frame body not complete in {timeout:g} s")
                except (ConnectionError, OSError) as exc:
                    return self._end(END_EOF, f"read failed: {exc}")
                if not data:
                    try:
                        decoder.check_eof()
                    except FrameError as exc:
                        return self._end(END_BAD_FRAME, str(exc))
                    return self._end(END_EOF, "plugin closed the connection")
                try:
                    envelopes = decoder.feed(data)
                except FrameError as exc:
                    return self._end(END_BAD_FRAME, str(exc))
                if decoder.pending_bytes == _PREFIX_BYTES:
                    self._violation(VIOLATION_SPLIT_FRAME)
                for envelope in envelopes:
                    await self._dispatch(envelope)
        finally:
            await self.close()

    def _violation(self, name: str) -> None:
        if self._on_violation is not None:
            self._on_violation(name)

    async def _dispatch(self, envelope: pb.Envelope) -> None:
        if envelope.plugin_id and self._plugin_name and envelope.plugin_id != self._plugin_name:
            self._violation(VIOLATION_FOREIGN_ID)
        payload = envelope.WhichOneof("payload")
        if payload in self._unsolicited:
            await self._on_message(self, envelope)
            return
        if payload is None and envelope.request_id == 0:
            self.keepalives += 1
            return
        future = self._pending.get(envelope.request_id)
        if future is None or future.done():
            self.stray_replies.append(envelope)
            return
        future.set_result(envelope)

    def _end(self, reason: str, detail: str) -> str:
        self.end_reason = reason
        self.end_detail = detail
        return reason

    async def close(self) -> None:
        """Close the connection and fail every request still waiting."""
        if self._closed:
            return
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PluginUnavailableError("the plugin connection ended"))
        self._pending.clear()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
