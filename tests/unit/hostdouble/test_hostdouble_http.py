"""The listener's HTTP parsing: limits and malformed heads, bytes in and results out."""

from __future__ import annotations

import asyncio

import pytest
from mesh_x402.hostdouble._http import (
    HeadError,
    HttpError,
    json_response,
    parse_request_head,
    parse_response_head,
    read_body,
)


def head_with(headers: int) -> bytes:
    lines = [b"POST /x?y=1 HTTP/1.1"] + [b"X-H%d: v" % i for i in range(headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class TestRequestHead:
    def test_parses(self) -> None:
        """Method, target, path, query and headers (case-insensitive lookup)."""
        head = parse_request_head(
            b"GET /a/b?q=1&r=2 HTTP/1.1\r\nHost: localhost\r\nX-Thing:  v  \r\n\r\n", 64
        )
        assert (head.method, head.path, head.query, head.version) == (
            "GET",
            "/a/b",
            "q=1&r=2",
            "1.1",
        )
        assert head.header("host") == "localhost"
        assert head.header("x-thing") == "v"
        assert head.header("missing") is None

    def test_64_headers_pass_65_do_not(self) -> None:
        """At most 64 headers; one more is 431."""
        assert len(parse_request_head(head_with(64), 64).headers) == 64
        with pytest.raises(HttpError) as caught:
            parse_request_head(head_with(65), 64)
        assert caught.value.status == 431

    @pytest.mark.parametrize(
        "raw",
        [
            b"GARBAGE\r\n\r\n",
            b"GET /x HTTP/2\r\n\r\n",
            b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
        ],
    )
    def test_malformed_is_400(self, raw: bytes) -> None:
        """A head that is not HTTP/1.x is refused with 400 naming the line."""
        with pytest.raises(HttpError) as caught:
            parse_request_head(raw, 64)
        assert caught.value.status == 400


class TestBody:
    async def test_content_length(self) -> None:
        """Content-Length bodies are read exactly."""
        head = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 64)
        assert await read_body(reader_of(b"hello"), head, 10) == b"hello"

    async def test_over_limit_is_413_before_reading(self) -> None:
        """A declared length over the limit is refused without reading the body."""
        head = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 64)
        with pytest.raises(HttpError) as caught:
            await read_body(reader_of(b""), head, 10)
        assert caught.value.status == 413

    async def test_chunked(self) -> None:
        """Chunked bodies are decoded (extensions and trailers dropped)."""
        head = parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 64)
        data = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        assert await read_body(reader_of(data), head, 10) == b"abcde"

    async def test_chunked_over_limit(self) -> None:
        """Chunks adding up to more than the limit are 413."""
        head = parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 64)
        with pytest.raises(HttpError) as caught:
            await read_body(reader_of(b"6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n"), head, 10)
        assert caught.value.status == 413

    @pytest.mark.parametrize(
        ("headers", "data"),
        [
            (b"Content-Length: 10\r\n", b"short"),
            (b"Content-Length: ten\r\n", b""),
            (b"Transfer-Encoding: gzip\r\n", b""),
            (b"Transfer-Encoding: chunked\r\n", b"zz\r\n"),
            (b"Transfer-Encoding: chunked\r\n", b"3\r\nabcXY"),
        ],
    )
    async def test_malformed_body_is_400(self, headers: bytes, data: bytes) -> None:
        """Short, unparsable or badly chunked bodies are 400, never a hang."""
        head = parse_request_head(b"POST / HTTP/1.1\r\n" + headers + b"\r\n", 64)
        with pytest.raises(HttpError) as caught:
            await read_body(reader_of(data), head, 100)
        assert caught.value.status == 400


class TestResponseHead:
    def test_parses(self) -> None:
        """Status line and headers of a plugin response."""
        head = parse_response_head(b"HTTP/1.1 402 Payment Required\r\nA: b\r\n\r\n", 64)
        assert (head.status, head.reason, head.header("a")) == (402, "Payment Required", "b")

    @pytest.mark.parametrize(
        "raw",
        [b"HTTP/2 200 OK\r\n\r\n", b"hello\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", head_with(0)],
    )
    def test_not_http1(self, raw: bytes) -> None:
        """Anything but an HTTP/1.x status line is refused."""
        with pytest.raises(HeadError):
            parse_response_head(raw, 64)

    def test_too_many_headers(self) -> None:
        """More than the allowed header lines are refused."""
        raw = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(65)) + b"\r\n"
        with pytest.raises(HeadError, match="65 header lines"):
            parse_response_head(raw, 64)


def test_json_response_is_complete() -> None:
    """Error answers carry their length and close the connection."""
    raw = json_response(403, {"error": "no"})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head
