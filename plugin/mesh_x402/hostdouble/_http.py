"""Just enough HTTP/1.1 for the management listener and the stream relay.

Hand-rolled rather than h11 because the limits are the point: the host
counts head bytes and header lines itself (64 KiB / 64 headers for a
request, 16 KiB / 64 headers for a plugin's response head on 0.76).
"""

from __future__ import annotations

import asyncio
import http
import json
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "HeadError",
    "HttpError",
    "RequestHead",
    "ResponseHead",
    "json_response",
    "parse_request_head",
    "parse_response_head",
    "read_body",
    "render_head",
]

_TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE_RE: Final = re.compile(rb"([A-Z]+) (\S+) HTTP/(1\.[01])")
_STATUS_LINE_RE: Final = re.compile(rb"HTTP/(1\.[01]) (\d{3})(?: ([^\r\n]*))?")

Headers = tuple[tuple[str, str], ...]


class HttpError(Exception):
    """A request the listener answers with `status` and a JSON error naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HeadError(ValueError):
    """A response head from the plugin that a 0.76 host refuses."""


def _parse_headers(lines: list[bytes], max_headers: int, error: type[Exception]) -> Headers:
    if len(lines) > max_headers:
        raise error(f"{len(lines)} header lines, over the limit of {max_headers}")
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise error(f"malformed header line {line[:80]!r}")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return tuple(headers)


def _header(headers: Headers, name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and headers (names keep the client's spelling)."""

    method: str
    target: str
    version: str
    headers: Headers

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return _header(self.headers, name)

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The query string without '?', or ''."""
        return self.target.partition("?")[2]


@dataclass(frozen=True)
class ResponseHead:
    """A parsed status line and headers."""

    version: str
    status: int
    reason: str
    headers: Headers

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return _header(self.headers, name)


class _MalformedHeadError(HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def parse_request_head(raw: bytes, max_headers: int) -> RequestHead:
    """Parse a request head (ending in CRLF CRLF).

    Raises:
        HttpError: 400 for a malformed head, 431 for too many headers.
    """
    lines = raw.rstrip(b"\r\n").split(b"\r\n")
    match = _REQUEST_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    if len(lines) - 1 > max_headers:
        raise HttpError(431, f"{len(lines) - 1} header lines, over the limit of {max_headers}")
    headers = _parse_headers(lines[1:], max_headers, _MalformedHeadError)
    method, target, version = (part.decode("latin-1") for part in match.groups())
    return RequestHead(method=method, target=target, version=version, headers=headers)


def parse_response_head(raw: bytes, max_headers: int) -> ResponseHead:
    """Parse a response head (ending in CRLF CRLF).

    Raises:
        HeadError: not an HTTP/1.x status line, or bad or too many headers.
    """
    lines = raw.rstrip(b"\r\n").split(b"\r\n")
    match = _STATUS_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise HeadError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = _parse_headers(lines[1:], max_headers, HeadError)
    version, status, reason = match.groups()
    return ResponseHead(
        version=version.decode("ascii"),
        status=int(status),
        reason=(reason or b"").decode("latin-1"),
        headers=headers,
    )


def render_head(start_line: str, headers: Headers) -> bytes:
    """A head from its first line and headers, ending in CRLF CRLF."""
    lines = [start_line, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, body: Any, headers: Headers = ()) -> bytes:
    """A complete `Connection: close` response with a JSON body."""
    payload = json.dumps(body).encode()
    phrase = http.HTTPStatus(status).phrase
    head = render_head(
        f"HTTP/1.1 {status} {phrase}",
        (
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
            *headers,
        ),
    )
    return head + payload


async def read_body(reader: asyncio.StreamReader, head: RequestHead, max_body: int) -> bytes:
    """Read the whole body as Content-Length or chunked says, up to `max_body` bytes.

    Raises:
        HttpError: 400 for a malformed length or chunk, 413 over the limit.
    """
    encoding = head.header("Transfer-Encoding")
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise HttpError(400, f"unsupported Transfer-Encoding {encoding!r}")
        return await _read_chunked(reader, max_body)
    length_text = head.header("Content-Length")
    if length_text is None:
        return b""
    if not length_text.strip().isdigit():
        raise HttpError(400, f"malformed Content-Length {length_text!r}")
    length = int(length_text)
    if length > max_body:
        raise HttpError(413, f"body of {length} bytes is over the {max_body}-byte limit")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the request body ended early") from None


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size_text = size_line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(400, f"malformed chunk size {size_text[:20]!r}") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers are read and dropped
                return bytes(body)
            if len(body) + size > max_body:
                raise HttpError(413, f"chunked body is over the {max_body}-byte limit")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError(400, "a chunk does not end in CRLF")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise HttpError(400, "the chunked request body is malformed or ended early") from None
