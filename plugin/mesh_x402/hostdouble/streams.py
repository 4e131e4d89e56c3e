"""Streamed HTTP bindings: negotiate a side stream, write the raw request, relay the answer.

For a streamed binding the host asks the plugin for a stream
(OpenStreamRequest, purpose generic, mode HTTP1), connects to the Unix
socket the plugin names, writes the whole HTTP/1.1 request, half-closes and
relays the plugin's bytes until EOF. A 0.76 host also rewrites the request
(x-request-id, Expect, Connection) and checks and rewrites the response head
(complete HTTP/1.x, at most 16 KiB and 64 headers, its own x-request-id).
TCP endpoints are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import Message

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble._http import (
    HeadError,
    Headers,
    RequestHead,
    json_response,
    parse_response_head,
    render_head,
)
from mesh_x402.hostdouble.errors import HostDoubleError

__all__ = [
    "MAX_RESPONSE_HEADERS",
    "MAX_RESPONSE_HEAD_BYTES",
    "RELAY_IDLE_SECONDS",
    "STREAM_IDLE_TIMEOUT_MS",
    "PluginRequest",
    "StreamRefusedError",
    "accepted_endpoint",
    "build_plugin_request",
    "is_uuid",
    "open_stream_request",
    "relay_response",
    "serve_streamed",
]

MAX_RESPONSE_HEAD_BYTES: Final = 16 * 1024
MAX_RESPONSE_HEADERS: Final = 64
STREAM_IDLE_TIMEOUT_MS: Final = 30_000
# The double's own guard, not a mesh-llm fact: a side stream that sends
# nothing for this long is closed, so a stuck plugin cannot hang a test.
RELAY_IDLE_SECONDS: Final = 120.0
_RELAY_CHUNK: Final = 64 * 1024
_DROPPED_ALWAYS: Final = frozenset({"connection", "transfer-encoding", "content-length"})
_DROPPED_076: Final = frozenset({"x-request-id", "expect"})

HostRequest = Callable[[str, Message], Awaitable[pb.Envelope]]


class StreamRefusedError(Exception):
    """The plugin did not give a usable stream; the client gets a 502 naming why."""


def is_uuid(value: str) -> bool:
    """True for a UUID in its usual 36-character hyphenated form."""
    if len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PluginRequest:
    """The raw request written to the plugin and the x-request-id the host stands by.

    `request_id` is None on 0.66, which passes the client's headers unchanged.
    """

    raw: bytes
    request_id: str | None


def build_plugin_request(
    head: RequestHead, binding_path: str, body: bytes, *, rewrite: bool
) -> PluginRequest:
    """The HTTP/1.1 request the host writes on the side stream.

    Every client header is kept except the framing ones (the body is
    buffered, so it goes with its Content-Length) and `Connection`, which
    becomes `Connection: close`. With `rewrite` (0.76) the client's
    x-request-id is replaced by a UUID unless it is one, and `Expect` is
    dropped (the host answered 100 itself).
    """
    client_id = head.header("x-request-id")
    request_id: str | None = None
    dropped = _DROPPED_ALWAYS
    if rewrite:
        dropped = _DROPPED_ALWAYS | _DROPPED_076
        request_id = (
            client_id if client_id is not None and is_uuid(client_id) else str(uuid.uuid4())
        )
    headers: list[tuple[str, str]] = [
        (name, value) for name, value in head.headers if name.lower() not in dropped
    ]
    if request_id is not None:
        headers.append(("x-request-id", request_id))
    if body or head.header("Content-Length") is not None or head.header("Transfer-Encoding"):
        headers.append(("Content-Length", str(len(body))))
    headers.append(("Connection", "close"))
    target = binding_path + (f"?{head.query}" if head.query else "")
    raw = render_head(f"{head.method} {target} HTTP/1.1", tuple(headers)) + body
    return PluginRequest(raw=raw, request_id=request_id)


def open_stream_request(
    stream_id: str, binding: pb.HttpBindingManifest, method: str, expected_bytes: int
) -> pb.OpenStreamRequest:
    """The OpenStreamRequest for one HTTP exchange on a streamed binding."""
    metadata = {"binding_id": binding.binding_id, "method": method, "path": binding.path}
    return pb.OpenStreamRequest(
        stream_id=stream_id,
        purpose=pb.STREAM_PURPOSE_GENERIC,
        mode=pb.STREAM_MODE_HTTP1,
        bidirectional=True,
        content_type="application/http",
        metadata_json=json.dumps(metadata),
        expected_bytes=expected_bytes,
        idle_timeout_ms=STREAM_IDLE_TIMEOUT_MS,
    )


def accepted_endpoint(reply: pb.Envelope, stream_id: str) -> str:
    """The Unix socket path from an accepting OpenStreamResponse.

    Raises:
        StreamRefusedError: an error, a refusal, a stream id mismatch, or a
            transport other than a Unix socket (TCP is refused).
    """
    payload = reply.WhichOneof("payload")
    if payload == "error_response":
        error = reply.error_response
        raise StreamRefusedError(f"plugin answered error {error.code}: {error.message}")
    if payload != "open_stream_response":
        raise StreamRefusedError(f"plugin answered {payload or 'an empty envelope'} to open_stream")
    response = reply.open_stream_response
    if not response.accepted:
        raise StreamRefusedError(f"plugin refused the stream: {response.message or 'no reason'}")
    if response.stream_id != stream_id:
        raise StreamRefusedError(f"stream id {response.stream_id!r} is not {stream_id!r}")
    if response.transport_kind != pb.STREAM_TRANSPORT_KIND_UNIX_SOCKET:
        kind = pb.StreamTransportKind.Name(response.transport_kind)
        raise StreamRefusedError(f"side streams must be Unix sockets, not {kind}")
    if not response.endpoint:
        raise StreamRefusedError("the stream response has no endpoint")
    return response.endpoint


async def relay_response(
    plugin: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    *,
    request_id: str | None,
    idle_timeout: float = RELAY_IDLE_SECONDS,
) -> None:
    """Copy the plugin's response to the client until EOF.

    With a `request_id` (0.76) the head is read and checked first, any
    x-request-id the plugin set is removed and the host's is added. A
    plugin silent for `idle_timeout` seconds ends the relay.

    Raises:
        StreamRefusedError: (0.76) the head is incomplete, too big or malformed;
            nothing has been written to the client then.
    """
    if request_id is not None:
        try:
            raw_head = await asyncio.wait_for(plugin.readuntil(b"\r\n\r\n"), idle_timeout)
        except asyncio.TimeoutError:
            raise StreamRefusedError(f"no response head within {idle_timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise StreamRefusedError("the plugin's response head is incomplete") from None
        except asyncio.LimitOverrunError:
            raise StreamRefusedError(
                f"the plugin's response head is over {MAX_RESPONSE_HEAD_BYTES} bytes"
            ) from None
        try:
            head = parse_response_head(raw_head, MAX_RESPONSE_HEADERS)
        except HeadError as exc:
            raise StreamRefusedError(f"bad response head from the plugin: {exc}") from None
        if not 200 <= head.status <= 599:
            raise StreamRefusedError(f"the plugin answered status {head.status}")
        headers: Headers = (
            *((n, v) for n, v in head.headers if n.lower() != "x-request-id"),
            ("x-request-id", request_id),
        )
        reason = f" {head.reason}" if head.reason else ""
        client.write(render_head(f"HTTP/{head.version} {head.status}{reason}", headers))
    while True:
        try:
            chunk = await asyncio.wait_for(plugin.read(_RELAY_CHUNK), idle_timeout)
        except asyncio.TimeoutError:
            break
        if not chunk:
            break
        client.write(chunk)
        await client.drain()
    await client.drain()


async def serve_streamed(
    request: HostRequest,
    *,
    stream_id: str,
    binding: pb.HttpBindingManifest,
    head: RequestHead,
    body: bytes,
    client: asyncio.StreamWriter,
    rewrite: bool,
) -> str | None:
    """Serve one client request through a streamed binding, writing to `client`.

    Returns:
        None when the plugin's response was relayed, else why a 502 was sent.
    """
    plugin_request = build_plugin_request(head, binding.path, body, rewrite=rewrite)
    message = open_stream_request(stream_id, binding, head.method, len(plugin_request.raw))
    try:
        reply = await request("open_stream_request", message)
        endpoint = accepted_endpoint(reply, stream_id)
        limit = MAX_RESPONSE_HEAD_BYTES if rewrite else _RELAY_CHUNK
        reader, writer = await asyncio.open_unix_connection(endpoint, limit=limit)
    except (StreamRefusedError, HostDoubleError, OSError) as exc:
        return _bad_gateway(client, str(exc) or type(exc).__name__)
    try:
        writer.write(plugin_request.raw)
        await writer.drain()
        writer.write_eof()
        await relay_response(reader, client, request_id=plugin_request.request_id)
    except StreamRefusedError as exc:
        return _bad_gateway(client, str(exc))
    except (ConnectionError, OSError) as exc:
        return f"relay broke: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return None


def _bad_gateway(client: asyncio.StreamWriter, reason: str) -> str:
    client.write(json_response(502, {"error": {"message": reason, "type": "bad_gateway"}}))
    return reason
