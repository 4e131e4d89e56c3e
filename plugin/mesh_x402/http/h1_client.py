"""A small HTTP/1.1 client for one origin: pooled keep-alive connections.

The gate forwards every paid request to one place, mesh-llm's API on
loopback, so it needs no general HTTP client: no redirects, cookies, proxies
or compression, only a request written in one piece and an answer read as it
arrives. A general client (aiohttp) spent about 0.55 ms of CPU per forwarded
request on this path, on the gate's one event loop thread; this one spends
about 0.2 ms, with httptools (llhttp, the parser in Node.js) doing the
parsing in C.

One `Exchange` is one request on one connection: `OriginPool.send` writes it
and returns once the response head arrived; the body is then read chunk by
chunk as the socket delivers it. Ending an exchange before its body ended
drops the connection, which tells the server to stop (mesh-llm stops
generating). A connection goes back to the pool only after a whole answer
that allows keep-alive.

Failures are `H1Error` with a stable `reason`: `unreachable` (no connection),
`timeout` (no progress within the timeout: the connection, the head, or the
next body bytes), `broken` (the connection closed early, or the bytes are not
HTTP).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httptools

__all__ = ["Exchange", "H1Error", "Origin", "OriginPool"]

# Above this many unread body bytes the socket stops being read (backpressure).
_HIGH_WATER: Final = 256 * 1024


class H1Error(Exception):
    """An exchange failed: `reason` is `unreachable`, `timeout` or `broken`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port, and a path prefix for every target."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """`http://127.0.0.1:9337` (or https, or with a path prefix) as an Origin.

        Raises:
            ValueError: not an http(s) URL with a host.
        """
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {base_url!r}")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, parts.port or default, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Exchange(asyncio.Protocol):
    """One connection, carrying one request and response at a time.

    Attributes:
        status: the response status, once `OriginPool.send` returned.
        headers: the response headers as (lower-case name, value) pairs.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._head_done = False
        self._informational = False
        self._until_eof = False
        self._keep_alive = False
        self.done = False
        self._error: H1Error | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment] # a stream transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail("broken", f"the upstream's answer is not HTTP/1.1: {exc}")
            self.abort()

    def eof_received(self) -> bool:
        self._end_at_eof()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_at_eof()
        if not self.done:
            self._fail("broken", "the upstream closed the connection before the answer ended")

    def pause_writing(self) -> None:
        pass  # a request is written whole and is small; nothing waits on a drain

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._informational = True
            self.headers = []
            return
        self.status = status
        self._keep_alive = self._parser.should_keep_alive()
        framed = any(name in ("content-length", "transfer-encoding") for name, _ in self.headers)
        self._until_eof = not framed and status not in (204, 304)
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self._transport is not None:
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.done = True
        self._wake()

    # -- the exchange -----------------------------------------------------------------

    def _end_at_eof(self) -> None:
        # A body with neither length nor chunking ends when the server closes.
        if self._head_done and self._until_eof and not self.done:
            self.done = True
            self._keep_alive = False
            self._wake()

    def _fail(self, reason: str, message: str) -> None:
        if self._error is None:
            self._error = H1Error(reason, message)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self, waiter: asyncio.Future[None], what: str) -> None:
        if not waiter.done():
            self._fail("timeout", f"the upstream sent nothing for {self._timeout:g} s ({what})")

    async def _progress(self, what: str) -> None:
        """Wait until something arrives, the connection ends, or the timeout passes."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(self._timeout, self._expire, waiter, what)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def start(self, request: bytes) -> None:
        """Write one whole request on this (idle) connection."""
        self._begin()
        assert self._transport is not None
        self._transport.write(request)

    async def head(self) -> None:
        """Wait for the response head.

        Raises:
            H1Error: the connection failed or the timeout passed first.
        """
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._progress("waiting for the response head")

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some);
        b"" once the body has ended.

        Raises:
            H1Error: the connection failed or stalled before the body ended.
        """
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                if self._buffered > _HIGH_WATER and self._transport is not None:
                    self._transport.resume_reading()
                self._buffered = 0
                return data
            if self.done:
                return b""
            if self._error is not None:
                raise self._error
            await self._progress("waiting for the rest of the body")

    @property
    def reusable(self) -> bool:
        """Whether the whole answer was read and the connection may carry another."""
        return self.done and self._keep_alive and not self._chunks and not self.closed

    def abort(self) -> None:
        """Drop the connection at once (the server sees the client leave)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class OriginPool:
    """Keep-alive connections to one origin, at most `max_connections` busy at once.

    Args:
        origin: where the requests go.
        timeout: seconds allowed to get a free slot, to connect, and between
            two steps of an answer (the head, each arrival of body bytes).
        max_connections: exchanges at once; more wait for a slot.
        idle_seconds: an idle connection older than this is closed rather
            than reused: below the 5 s after which common servers (uvicorn,
            many proxies) close it, so a request is not written into a
            connection the server is closing.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        timeout: float,
        max_connections: int,
        idle_seconds: float = 4.0,
    ) -> None:
        self.origin = origin
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle: list[Exchange] = []
        self._open: set[Exchange] = set()
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if origin.scheme == "https" else None
        )

    async def send(self, request: bytes) -> Exchange:
        """Write `request` (head and body, whole) and wait for the response head.

        The caller owns the returned exchange and must hand it back with
        `finish` once done with it, whatever happens.

        Raises:
            H1Error: no slot or connection in time, or no response head.
        """
        await self._acquire_slot()
        try:
            exchange = self._reusable() or await self._connect()
            exchange.start(request)
            try:
                await exchange.head()
            except BaseException:
                exchange.abort()
                self._open.discard(exchange)
                raise
        except BaseException:
            self._slots.release()
            raise
        return exchange

    def finish(self, exchange: Exchange) -> None:
        """Return the exchange's connection to the pool, or drop it mid-answer."""
        if exchange.reusable:
            exchange.idle_since = asyncio.get_running_loop().time()
            self._idle.append(exchange)
        else:
            exchange.abort()
            self._open.discard(exchange)
        self._slots.release()

    async def aclose(self) -> None:
        """Close every connection, idle or busy."""
        for exchange in self._open:
            exchange.abort()
        self._open.clear()
        self._idle.clear()

    async def _acquire_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._timeout)
        except asyncio.TimeoutError:
            raise H1Error(
                "timeout", f"no free upstream connection within {self._timeout:g} s"
            ) from None

    def _reusable(self) -> Exchange | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            exchange = self._idle.pop()  # the most recent: the least likely to be closing
            if not exchange.closed and now - exchange.idle_since < self._idle_seconds:
                return exchange
            exchange.abort()
            self._open.discard(exchange)
        return None

    async def _connect(self) -> Exchange:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            _, exchange = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Exchange(loop, self._timeout),
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                ),
                self._timeout,
            )
        except asyncio.TimeoutError:
            raise H1Error(
                "timeout", f"cannot connect to {origin.host_header} within {self._timeout:g} s"
            ) from None
        except OSError as exc:
            raise H1Error(
                "unreachable", f"cannot connect to {origin.host_header}: {exc.strerror or exc}"
            ) from None
        self._open.add(exchange)
        return exchange
