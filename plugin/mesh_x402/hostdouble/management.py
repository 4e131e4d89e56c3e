"""The node's management listener on 127.0.0.1: plugin HTTP bindings and the blackboard.

Routes: `/api/plugins/<name>/http<path>` for the plugin's bindings (exact
method and path), and `/api/plugins/blackboard/http/{post,feed,search}`
when the node has a blackboard. Limits are mesh-llm's: one request per
connection, the whole request within 5 s, a head of at most 64 KiB and 64
headers, a body of at most 8 MiB. On 0.76 every `/api/plugins*` route serves
only trusted local callers (loopback peer; Host and Origin, when present,
naming localhost or a loopback IP); anyone else gets 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import Message

from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble._http import (
    HttpError,
    RequestHead,
    json_response,
    parse_request_head,
    read_body,
)
from mesh_x402.hostdouble.bindings import is_streamed, serve_buffered
from mesh_x402.hostdouble.blackboard import Blackboard, BoardError
from mesh_x402.hostdouble.streams import serve_streamed

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "REQUEST_DEADLINE",
    "ManagementBackend",
    "ManagementServer",
    "is_trusted_local",
]

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 64
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
REQUEST_DEADLINE: Final = 5.0
# After refusing a request early, keep reading (and dropping) what the
# client still sends for a moment, so it sees the answer instead of a reset.
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 4 * MAX_BODY_BYTES
_BINDING_RE: Final = re.compile(r"/api/plugins/([^/]+)/http(/.*)")
_BOARD_PLUGIN: Final = "blackboard"


class ManagementBackend(Protocol):
    """What the listener needs from its node (the Host implements it)."""

    @property
    def plugin_name(self) -> str:
        """The configured plugin name, the `<name>` in binding routes."""

    @property
    def trusted_local_only(self) -> bool:
        """0.76: `/api/plugins*` serves trusted local callers only."""

    @property
    def rewrite_streams(self) -> bool:
        """0.76: rewrite requests and check response heads on side streams."""

    @property
    def board(self) -> Blackboard | None:
        """The node's blackboard, or None (none configured, or a public mesh)."""

    @property
    def peer_id(self) -> str:
        """The node's peer id (the default `peer_id` of a post)."""

    def binding(self, method: str, path: str) -> pb.HttpBindingManifest | None:
        """The loaded plugin's binding for exactly this method and path."""

    def next_stream_id(self) -> str:
        """A fresh `http-<pid>-<n>` stream id."""

    async def request(self, payload_name: str, message: Message) -> pb.Envelope:
        """Send a host request to the plugin and return its reply."""

    def board_posted(self, item: Any) -> None:
        """A local post was accepted (the mesh gossips it)."""


def _is_local_name(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_part(value: str) -> str:
    value = value.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def is_trusted_local(peer: str, host_header: str | None, origin: str | None) -> bool:
    """0.76's trusted-local rule for `/api/plugins*` routes."""
    if not _is_local_name(peer):
        return False
    if host_header is not None and not _is_local_name(_host_part(host_header)):
        return False
    if origin is not None:
        hostname = urlsplit(origin.strip()).hostname
        if hostname is None or not _is_local_name(hostname):
            return False
    return True


class ManagementServer:
    """The 127.0.0.1 management listener of one node."""

    def __init__(self, backend: ManagementBackend, *, deadline: float = REQUEST_DEADLINE) -> None:
        self._backend = backend
        self._deadline = deadline
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` once started."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free port)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", port, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # always inside a task here
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError):
            pass  # the client went away; nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received = await asyncio.wait_for(self._read_request(reader, writer), self._deadline)
        except asyncio.TimeoutError:
            error = HttpError(408, f"the request did not arrive within {self._deadline:g} s")
            await self._refuse(reader, writer, error)
            return
        except HttpError as exc:
            await self._refuse(reader, writer, exc)
            return
        if received is None:
            return
        head, body = received
        peer = writer.get_extra_info("peername")
        peer_host = peer[0] if isinstance(peer, tuple) else ""
        await self._route(head, body, peer_host, writer)
        await writer.drain()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[RequestHead, bytes] | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"the request head is over {MAX_HEAD_BYTES} bytes") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None  # connected and left without a request
            raise HttpError(400, "the request head ended early") from None
        head = parse_request_head(raw, MAX_HEADERS)
        expect = head.header("Expect")
        if expect is not None and expect.strip().lower() == "100-continue":
            length = head.header("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
                raise HttpError(
                    413, f"body of {int(length)} bytes is over the {MAX_BODY_BYTES}-byte limit"
                )
            # The host answers 100 itself, then reads the whole body.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await read_body(reader, head, MAX_BODY_BYTES)
        return head, body

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, error: HttpError
    ) -> None:
        writer.write(json_response(error.status, {"error": error.message}))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await self._linger(reader)

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LINGER_SECONDS
        dropped = 0
        while dropped < _LINGER_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                chunk = await asyncio.wait_for(reader.read(256 * 1024), remaining)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                return
            if not chunk:
                return
            dropped += len(chunk)

    async def _route(
        self, head: RequestHead, body: bytes, peer: str, writer: asyncio.StreamWriter
    ) -> None:
        path = head.path
        if not path.startswith("/api/plugins"):
            writer.write(json_response(404, {"error": f"no route for {path}"}))
            return
        backend = self._backend
        if backend.trusted_local_only and not is_trusted_local(
            peer, head.header("Host"), head.header("Origin")
        ):
            writer.write(json_response(403, {"error": "plugin routes serve local callers only"}))
            return
        match = _BINDING_RE.fullmatch(path)
        if match is None:
            writer.write(json_response(404, {"error": f"no route for {path}"}))
            return
        name, sub_path = match.groups()
        if name == _BOARD_PLUGIN and backend.board is not None:
            writer.write(self._blackboard(backend.board, head, body, sub_path))
            return
        if name != backend.plugin_name:
            writer.write(json_response(404, {"error": f"no plugin named {name!r}"}))
            return
        binding = backend.binding(head.method, sub_path)
        if binding is None:
            writer.write(
                json_response(
                    404, {"error": f"plugin {name!r} has no binding {head.method} {sub_path}"}
                )
            )
            return
        if is_streamed(binding):
            await serve_streamed(
                backend.request,
                stream_id=backend.next_stream_id(),
                binding=binding,
                head=head,
                body=body,
                client=writer,
                rewrite=backend.rewrite_streams,
            )
        else:
            writer.write(await serve_buffered(backend.request, binding, head, body))

    def _blackboard(self, board: Blackboard, head: RequestHead, body: bytes, route: str) -> bytes:
        query = {key: values[-1] for key, values in parse_qs(head.query).items()}
        try:
            if head.method == "POST" and route == "/post":
                fields = _json_object(body)
                item = board.post(
                    fields.get("text"),
                    fields.get("from", ""),
                    fields.get("peer_id", self._backend.peer_id),
                )
                self._backend.board_posted(item)
                return json_response(200, item.to_json())
            if head.method == "GET" and route == "/feed":
                items = board.feed(
                    since=_int_param(query, "since", 0),
                    author=query.get("from") or None,
                    limit=_int_param(query, "limit", None),
                )
                return json_response(200, [item.to_json() for item in items])
            if head.method == "GET" and route == "/search":
                items = board.search(
                    query.get("q", ""),
                    since=_int_param(query, "since", 0),
                    limit=_int_param(query, "limit", None),
                )
                return json_response(200, [item.to_json() for item in items])
        except BoardError as exc:
            return json_response(502, {"error": str(exc)})
        return json_response(404, {"error": f"blackboard has no binding {head.method} {route}"})


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError as exc:
        raise BoardError(f"the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BoardError("the body is not a JSON object")
    return parsed


def _int_param(query: dict[str, str], name: str, default: int | None) -> Any:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BoardError(f"{name} must be an integer, not {text!r}") from None
