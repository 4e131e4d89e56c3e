"""Running the plugin's ASGI app with uvicorn on a Unix socket and a TCP port.

One app serves two doors: the Unix socket the host connects to for a
streamed binding (clients on this machine, through the management port),
and the gateway TCP port (remote clients). Both run in the same event loop
as the host session, so the app must never block it.

uvicorn runs its httptools protocol (llhttp, in C): about 0.15 ms of CPU
per request here against 0.35 ms for its pure-Python h11 one, on the same
event loop thread as every paid request's own work. Three rules are added
to it (`_GateHttpProtocol`):
- The host writes the whole request, then half-closes its side, then reads
  our response until EOF. uvicorn closes a connection as soon as it reads
  EOF, which would drop the response: on the Unix socket, EOF after a
  complete request keeps the connection open for writing.
- A request head is accepted up to 65 KiB (the host passes heads up to
  64 KiB); a larger one gets 431 and the connection closes. llhttp keeps no
  limit of its own, so unread head bytes are bounded here too.
- A 0.76 host refuses a response whose head is over 16 KiB or 64 headers.
  Whatever app is served, a head that would not fit is replaced by a 500
  with a small JSON error, so the client gets an answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Generator, Iterable, MutableMapping
from pathlib import Path
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mesh_x402.log import Event, get_logger

__all__ = [
    "MAX_RESPONSE_HEADERS",
    "MAX_RESPONSE_HEAD_BYTES",
    "ASGIApp",
    "HttpServer",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "bind_tcp",
    "limit_response_heads",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_RESPONSE_HEAD_BYTES: Final = 16 * 1024
MAX_RESPONSE_HEADERS: Final = 64
# What uvicorn adds to the app's head: the status line, `date`, one of
# `content-length`/`transfer-encoding`, `connection`; and what a 0.76 host
# adds (its own `x-request-id`).
_ADDED_HEADERS: Final = 4
_ADDED_BYTES: Final = 256
# The host accepts request heads up to 64 KiB from its clients and passes
# them on; a head over this gets 431.
_MAX_REQUEST_HEAD_BYTES: Final = 64 * 1024 + 1024
# Raw bytes read while a head is incomplete: the limit plus one read (which
# may also carry the end of the previous request's body), so a head that
# never ends cannot grow without bound, and no head within the limit is cut.
_MAX_UNFINISHED_HEAD_BYTES: Final = _MAX_REQUEST_HEAD_BYTES + 256 * 1024
_HEAD_TOO_LARGE_RESPONSE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 29\r\n"
    b"connection: close\r\n\r\n"
    b"request head exceeds 65 KiB\r\n"
)
_GRACEFUL_SHUTDOWN_SECONDS: Final = 5

_log = get_logger("http")

_HEAD_TOO_LARGE_BODY: Final = (
    b'{"error":{"message":"response head over the host\'s limits","type":"server_error"}}'
)


def limit_response_heads(app: ASGIApp) -> ASGIApp:
    """Wrap `app` so that no response head exceeds the 0.76 host's limits."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        replaced = False

        async def guarded(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers: Iterable[tuple[bytes, bytes]] = message.get("headers", ())
                headers = list(headers)
                size = sum(len(name) + len(value) + 4 for name, value in headers)
                if (
                    len(headers) + _ADDED_HEADERS > MAX_RESPONSE_HEADERS
                    or size + _ADDED_BYTES > MAX_RESPONSE_HEAD_BYTES
                ):
                    replaced = True
                    _log.error(Event.HTTP_HEAD_TOO_LARGE, headers=len(headers), head_bytes=size)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(_HEAD_TOO_LARGE_BODY)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": _HEAD_TOO_LARGE_BODY})
                    return
            elif replaced:
                return
            await send(message)

        await app(scope, receive, guarded)

    return limited


class _GateHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the host's half-close and a request-head limit.

    Only the host half-closes by design. On the gateway's TCP port an EOF is
    a client that left: closing at once lets the gate see the disconnect and
    release a payment whose answer never reached anyone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # raw bytes read since the current head began
        self._reading_head = True
        self._message_done = False
        self._refused = False

    # uvicorn types the hook as returning None; asyncio's Protocol allows bool.
    def eof_received(self) -> bool:  # type: ignore[override]
        sock = self.transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return False
        # Returning true keeps the transport open for writing; a request
        # still incomplete at EOF closes it (the app sees a disconnect).
        return self._message_done

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_UNFINISHED_HEAD_BYTES:
                self._refuse_head()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._message_done = False

    def on_headers_complete(self) -> None:
        if self._refused:  # a request pipelined behind the refused one
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > _MAX_REQUEST_HEAD_BYTES:
            self._refuse_head()
            return
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._message_done = True
        super().on_message_complete()

    def _refuse_head(self) -> None:
        self._refused = True
        _log.info(Event.HTTP_HEAD_REFUSED, head_bytes=self._head_bytes)
        # A response still being written for an earlier request on this
        # connection must not be cut by ours: then the connection just ends.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_HEAD_TOO_LARGE_RESPONSE)
        self.transport.close()


class _ToStructlog(logging.Handler):
    """Sends uvicorn's own warnings and errors (an app exception, a protocol
    error) to the plugin's log as JSON, instead of plain text on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        _log.log(
            record.levelno,
            Event.HTTP_SERVER_ERROR,
            message=record.getMessage(),
            exc_info=record.exc_info or False,
        )


def _route_uvicorn_logs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(handler, _ToStructlog) for handler in logger.handlers):
        logger.addHandler(_ToStructlog(logging.WARNING))
    logger.propagate = False


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the `serve` command."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind_unix(path: Path) -> socket.socket:
    # A socket file left by a killed predecessor would make bind fail.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        # Only this user (the host runs as us) may connect.
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one.

    Every accepted connection inherits TCP_NODELAY from it: without that a
    response written as head then body waits ~40 ms for the client's delayed
    ACK (Nagle). The test and benchmark servers listen through this too, so
    what they measure is what `serve` does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """One ASGI app on a Unix socket, a TCP address, or both.

    The sockets are bound and listening when `start` returns, so their
    addresses can be handed out at once (connections wait in the backlog
    until uvicorn accepts them).

    Args:
        app: the ASGI app; wrapped with `limit_response_heads`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = limit_response_heads(app)
        self._sockets: list[socket.socket] = []
        self._unix_path: Path | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    def listen_unix(self, path: Path) -> None:
        """Bind the Unix socket at `path` (a stale socket file there is replaced).

        Raises:
            OSError: the socket cannot be bound.
        """
        self._sockets.append(_bind_unix(path))
        self._unix_path = path
        _log.info(Event.HTTP_LISTENING, unix=str(path))

    def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Bind HOST:PORT (port 0 picks a free one); return the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        sock = bind_tcp(host, port)
        self._sockets.append(sock)
        bound: tuple[str, int] = sock.getsockname()[:2]
        _log.info(Event.HTTP_LISTENING, tcp=f"{bound[0]}:{bound[1]}")
        return bound

    async def start(self) -> None:
        """Start serving on every bound socket, in the running event loop."""
        config = uvicorn.Config(
            self._app,
            http=_GateHttpProtocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
        _route_uvicorn_logs()
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets))

    async def stop(self) -> None:
        """Stop accepting, let open responses finish (a few seconds at most), close."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        for sock in self._sockets:
            sock.close()
        if self._unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._unix_path.unlink()
