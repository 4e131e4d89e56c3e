"""The plugin's side of the host connection.

One `HostSession` reads frames from the host's socket and writes ours. The
host may have several requests in flight (a health check during a stream
negotiation), each answered by its request id in any order, so every request
runs in its own task and a slow one never delays a health check. Unsolicited
frames (mesh events, channel messages) go through one queue, in order, so a
receiver that takes its time cannot stall the reader either.

The host drops a plugin that sends nothing for 10 s on some releases, so an
empty envelope goes out whenever nothing else was written for a few seconds.
The session ends at end of stream (the host is gone: nothing else will kill
us) and raises FrameError on a broken frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.log import Event, get_logger
from mesh_x402.mesh.framing import PROTOCOL_VERSION, FrameDecoder, encode_frame

__all__ = [
    "INTERNAL_ERROR",
    "KEEPALIVE_SECONDS",
    "METHOD_NOT_FOUND",
    "HostSession",
    "MessageHandler",
    "RequestHandler",
]

METHOD_NOT_FOUND: Final = -32601
INTERNAL_ERROR: Final = -32603
KEEPALIVE_SECONDS: Final = 3.0
_READ_CHUNK: Final = 256 * 1024

# Payloads the host sends without expecting an answer, and replies to
# requests we never make: neither is answered, whatever its request id.
_NOT_REQUESTS: Final = frozenset(
    {
        "mesh_event",
        "channel_message",
        "bulk_transfer_message",
        "rpc_notification",
        "cancel_stream_notification",
        "close_stream_notification",
        "stream_error",
        "initialize_response",
        "health_response",
        "shutdown_response",
        "rpc_response",
        "error_response",
        "open_stream_response",
        "invoke_service_response",
        "open_mesh_stream_response",
    }
)

RequestHandler = Callable[[pb.Envelope], Awaitable[pb.Envelope]]
"""Takes a host request, returns the reply envelope (payload only; ids are filled in)."""
MessageHandler = Callable[[pb.Envelope], Awaitable[None]]
"""Takes an unsolicited envelope (a mesh event, a channel message)."""

_log = get_logger("host")


class HostSession:
    """Dispatches the host's frames and writes ours, one whole frame per write.

    Args:
        initialize: the reply to InitializeRequest (see `manifest`).
        keepalive_seconds: the longest quiet spell before an empty envelope.
    """

    def __init__(
        self, initialize: pb.InitializeResponse, *, keepalive_seconds: float = KEEPALIVE_SECONDS
    ) -> None:
        self._plugin_id = initialize.plugin_id
        self._keepalive_seconds = keepalive_seconds
        self._requests: dict[str, RequestHandler] = {
            "initialize_request": self._make_initialize(initialize),
            "health_request": _health,
            "shutdown_request": _shutdown,
        }
        self._messages: dict[str, MessageHandler] = {}
        self._inbox: asyncio.Queue[tuple[MessageHandler, pb.Envelope]] = asyncio.Queue()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._last_write = 0.0
        self._shutdown = asyncio.Event()
        self.initialized = asyncio.Event()
        """Set once the initialize reply has been written."""
        self.initialize_request: pb.InitializeRequest | None = None
        """The host's InitializeRequest (its version, the mesh's visibility), once answered."""

    def on_request(self, payload: str, handler: RequestHandler) -> None:
        """Answer host requests whose payload field is `payload` with `handler`."""
        self._requests[payload] = handler

    def on_message(self, payload: str, handler: MessageHandler) -> None:
        """Pass unsolicited frames whose payload field is `payload` to `handler`."""
        self._messages[payload] = handler

    async def send(self, envelope: pb.Envelope) -> None:
        """Write one envelope (an unsolicited one: request_id stays as given, 0 by default)."""
        if self._writer is None:
            raise RuntimeError("the session is not running")
        envelope.protocol_version = PROTOCOL_VERSION
        envelope.plugin_id = self._plugin_id
        frame = encode_frame(envelope)
        async with self._write_lock:
            self._writer.write(frame)
            self._last_write = asyncio.get_running_loop().time()
            await self._writer.drain()

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve the connection until the host closes it (or asks us to shut down).

        Raises:
            FrameError: the host sent an oversized, truncated or undecodable frame.
        """
        self._writer = writer
        self._last_write = asyncio.get_running_loop().time()
        helpers = [
            asyncio.create_task(self._keepalive()),
            asyncio.create_task(self._drain_inbox()),
        ]
        reading = asyncio.create_task(self._read(reader))
        stopping = asyncio.create_task(self._shutdown.wait())
        try:
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                reading.result()
        finally:
            for task in [reading, stopping, *helpers, *self._in_flight]:
                task.cancel()
            await asyncio.gather(
                reading, stopping, *helpers, *self._in_flight, return_exceptions=True
            )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = await reader.read(_READ_CHUNK)
            except ConnectionError:
                data = b""
            if not data:
                decoder.check_eof()
                _log.info(Event.HOST_DISCONNECTED)
                return
            for envelope in decoder.feed(data):
                self._dispatch(envelope)

    def _dispatch(self, envelope: pb.Envelope) -> None:
        payload = envelope.WhichOneof("payload")
        if payload is not None and payload in self._messages:
            self._inbox.put_nowait((self._messages[payload], envelope))
            return
        if payload is not None and payload in _NOT_REQUESTS:
            _log.debug(Event.HOST_IGNORED, payload=payload)
            return
        if envelope.request_id == 0:
            # An empty or unknown unsolicited frame: there is nobody to answer.
            if payload is not None:
                _log.debug(Event.HOST_IGNORED, payload=payload)
            return
        handler = self._requests.get(payload or "")
        task = asyncio.create_task(self._answer(envelope, payload, handler))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(
        self, request: pb.Envelope, payload: str | None, handler: RequestHandler | None
    ) -> None:
        if handler is None:
            _log.warning(Event.HOST_UNKNOWN_REQUEST, payload=payload, request_id=request.request_id)
            reply = _error(METHOD_NOT_FOUND, f"unsupported request: {payload or 'unknown payload'}")
        else:
            try:
                reply = await handler(request)
            except Exception as exc:  # noqa: BLE001 - the host must get an answer, never silence
                _log.error(Event.HOST_HANDLER_FAILED, payload=payload, error=repr(exc))
                reply = _error(INTERNAL_ERROR, f"{payload} failed: {type(exc).__name__}")
        reply.request_id = request.request_id
        try:
            await self.send(reply)
        except (ConnectionError, RuntimeError) as exc:
            _log.warning(Event.HOST_WRITE_FAILED, payload=payload, error=repr(exc))
            return
        if payload == "initialize_request":
            self.initialize_request = request.initialize_request
            self.initialized.set()
        elif payload == "shutdown_request":
            self._shutdown.set()

    async def _drain_inbox(self) -> None:
        while True:
            handler, envelope = await self._inbox.get()
            try:
                await handler(envelope)
            except Exception as exc:  # noqa: BLE001 - one bad message must not end the session
                _log.error(
                    Event.HOST_HANDLER_FAILED,
                    payload=envelope.WhichOneof("payload"),
                    error=repr(exc),
                )

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            quiet = loop.time() - self._last_write
            if quiet >= self._keepalive_seconds:
                await self.send(pb.Envelope())
                continue
            await asyncio.sleep(self._keepalive_seconds - quiet)

    @staticmethod
    def _make_initialize(response: pb.InitializeResponse) -> RequestHandler:
        async def initialize(request: pb.Envelope) -> pb.Envelope:
            init = request.initialize_request
            _log.info(
                Event.HOST_INITIALIZED,
                host_version=init.host_version,
                host_protocol_version=init.host_protocol_version,
                mesh_visibility=init.mesh_visibility,
            )
            return pb.Envelope(initialize_response=response)

        return initialize


async def _health(_request: pb.Envelope) -> pb.Envelope:
    return pb.Envelope(health_response=pb.HealthResponse(status=pb.HealthResponse.STATUS_OK))


async def _shutdown(_request: pb.Envelope) -> pb.Envelope:
    # mesh-llm SIGKILLs plugins instead; a host that asks gets an answer,
    # then the session ends once the answer is written.
    return pb.Envelope(shutdown_response=pb.ShutdownResponse())


def _error(code: int, message: str) -> pb.Envelope:
    return pb.Envelope(error_response=pb.ErrorResponse(code=code, message=message))
