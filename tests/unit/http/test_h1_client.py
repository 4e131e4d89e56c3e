"""The gate's HTTP/1.1 client against scripted servers on loopback: framing,
keep-alive, failures, slots and backpressure, byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from mesh_x402.http.h1_client import Exchange, H1Error, Origin, OriginPool

REQUEST = b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ScriptedServer:
    """Answers each connection with `script`; counts connections and requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> ScriptedServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._open.add(writer)
            try:
                await self.script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self._open.discard(writer)
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Since Python 3.12 wait_closed also waits for every accepted connection,
        # and a kept-alive one ends only when the pool closes it, after the test.
        for writer in self._open:
            writer.transport.abort()
        await self._server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answering(*responses: bytes, keep_open: bool = True) -> Script:
    """A script that reads one request per response and writes the response."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if keep_open:
            await reader.read()  # until the client closes

    return script


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., OriginPool]]:
    made: list[OriginPool] = []

    def make(
        url: str, *, timeout: float = 5.0, max_connections: int = 4, **kw: float
    ) -> OriginPool:
        pool = OriginPool(Origin.parse(url), timeout=timeout, max_connections=max_connections, **kw)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.aclose()


async def body_of(exchange: Exchange) -> bytes:
    parts = []
    while chunk := await exchange.next_chunk():
        parts.append(chunk)
    return b"".join(parts)


class TestFraming:
    async def test_length_chunked_and_keep_alive(self, pools: Callable[..., OriginPool]) -> None:
        """A sized and a chunked answer are read whole, on one kept-alive connection."""
        sized = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello"
        chunked = (
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        async with ScriptedServer(answering(sized, chunked)) as server:
            pool = pools(server.url)
            first = await pool.send(REQUEST)
            assert (first.status, ("x-a", "1") in first.headers) == (200, True)
            assert await body_of(first) == b"hello"
            pool.finish(first)
            second = await pool.send(REQUEST)
            assert second.status == 201
            assert await body_of(second) == b"abcdefg"
            pool.finish(second)
            assert server.connections == 1

    async def test_answer_ended_by_close_is_whole_and_not_reused(
        self, pools: Callable[..., OriginPool]
    ) -> None:
        unsized = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"
        async with ScriptedServer(answering(unsized, keep_open=False)) as server:
            pool = pools(server.url)
            exchange = await pool.send(REQUEST)
            assert await body_of(exchange) == b"until the end"
            assert not exchange.reusable
            pool.finish(exchange)
            again = await pool.send(REQUEST)
            assert await body_of(again) == b"until the end"
            pool.finish(again)
            assert server.connections == 2

    async def test_connection_close_is_honoured(self, pools: Callable[..., OriginPool]) -> None:
        closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        async with ScriptedServer(answering(closing)) as server:
            pool = pools(server.url)
            for _ in range(2):
                exchange = await pool.send(REQUEST)
                assert await body_of(exchange) == b"ok"
                pool.finish(exchange)
            assert server.connections == 2

    async def test_interim_answer_is_skipped(self, pools: Callable[..., OriginPool]) -> None:
        early = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        final = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"
        async with ScriptedServer(answering(early + final)) as server:
            pool = pools(server.url)
            exchange = await pool.send(REQUEST)
            assert exchange.status == 200
            assert exchange.headers == [("content-length", "1")]
            assert await body_of(exchange) == b"x"
            pool.finish(exchange)

    async def test_large_body_with_a_slow_reader_arrives_in_order(
        self, pools: Callable[..., OriginPool]
    ) -> None:
        """Past the high-water mark the socket pauses, and nothing is lost or reordered."""
        payload = bytes(range(256)) * 8192  # 2 MiB
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload)
        async with ScriptedServer(answering(head + payload)) as server:
            pool = pools(server.url)
            exchange = await pool.send(REQUEST)
            received = bytearray()
            while chunk := await exchange.next_chunk():
                received += chunk
                await asyncio.sleep(0.001)
            assert bytes(received) == payload
            pool.finish(exchange)


class TestFailures:
    @pytest.mark.parametrize(
        "answer",
        [b"not http at all\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"],
        ids=["garbage", "bad-length"],
    )
    async def test_bytes_that_are_not_http(
        self, pools: Callable[..., OriginPool], answer: bytes
    ) -> None:
        async with ScriptedServer(answering(answer)) as server:
            with pytest.raises(H1Error) as caught:
                await pools(server.url).send(REQUEST)
            assert caught.value.reason == "broken"

    async def test_close_before_the_head(self, pools: Callable[..., OriginPool]) -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)

        async with ScriptedServer(hang_up) as server:
            with pytest.raises(H1Error) as caught:
                await pools(server.url).send(REQUEST)
            assert caught.value.reason == "broken"

    async def test_close_mid_body(self, pools: Callable[..., OriginPool]) -> None:
        cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
        async with ScriptedServer(answering(cut, keep_open=False)) as server:
            pool = pools(server.url)
            exchange = await pool.send(REQUEST)
            assert await exchange.next_chunk() == b"abc"
            with pytest.raises(H1Error) as caught:
                await exchange.next_chunk()
            assert caught.value.reason == "broken"
            pool.finish(exchange)

    async def test_silence_times_out(self, pools: Callable[..., OriginPool]) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        async with ScriptedServer(silent) as server:
            with pytest.raises(H1Error) as caught:
                await pools(server.url, timeout=0.2).send(REQUEST)
            assert caught.value.reason == "timeout"

    async def test_unreachable(self, pools: Callable[..., OriginPool]) -> None:
        async with ScriptedServer(answering()) as server:
            url = server.url
        with pytest.raises(H1Error) as caught:
            await pools(url).send(REQUEST)
        assert caught.value.reason == "unreachable"


class TestSlots:
    async def test_a_busy_pool_makes_the_next_request_wait_then_time_out(
        self, pools: Callable[..., OriginPool]
    ) -> None:
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        async with ScriptedServer(answering(ok, ok)) as server:
            pool = pools(server.url, timeout=0.2, max_connections=1)
            held = await pool.send(REQUEST)
            with pytest.raises(H1Error) as caught:
                await pool.send(REQUEST)
            assert caught.value.reason == "timeout"
            assert "no free upstream connection" in str(caught.value)
            waiting = asyncio.ensure_future(pool.send(REQUEST))
            await body_of(held)
            pool.finish(held)
            second = await waiting
            assert await body_of(second) == b"ok"
            pool.finish(second)
            assert server.connections == 1

    async def test_an_exchange_dropped_mid_body_frees_its_slot(
        self, pools: Callable[..., OriginPool]
    ) -> None:
        partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc"
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        async with ScriptedServer(answering(partial, ok)) as server:
            pool = pools(server.url, max_connections=1)
            dropped = await pool.send(REQUEST)
            assert not dropped.reusable
            pool.finish(dropped)
            assert dropped.closed
            fresh = await pool.send(REQUEST)
            pool.finish(fresh)
            assert server.connections == 2

    async def test_an_idle_connection_past_its_age_is_not_reused(
        self, pools: Callable[..., OriginPool]
    ) -> None:
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        async with ScriptedServer(answering(ok)) as server:
            pool = pools(server.url, idle_seconds=0.05)
            first = await pool.send(REQUEST)
            await body_of(first)
            pool.finish(first)
            await asyncio.sleep(0.1)
            second = await pool.send(REQUEST)
            await body_of(second)
            pool.finish(second)
            assert server.connections == 2
            assert first.closed


class TestOrigin:
    @pytest.mark.parametrize(
        ("url", "expected", "host_header"),
        [
            ("http://127.0.0.1:9337", Origin("http", "127.0.0.1", 9337, ""), "127.0.0.1:9337"),
            ("https://api.example/base/", Origin("https", "api.example", 443, "/base"), None),
            ("http://[::1]:8080", Origin("http", "::1", 8080, ""), "[::1]:8080"),
            ("http://localhost", Origin("http", "localhost", 80, ""), "localhost:80"),
        ],
    )
    def test_parse(self, url: str, expected: Origin, host_header: str | None) -> None:
        assert Origin.parse(url) == expected
        if host_header is not None:
            assert expected.host_header == host_header

    @pytest.mark.parametrize("url", ["ftp://x", "http://", "127.0.0.1:9337"])
    def test_not_an_http_url(self, url: str) -> None:
        with pytest.raises(ValueError, match="not an http"):
            Origin.parse(url)
