"""Side streams: request rewriting per generation, stream answers, response head checks."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble._http import parse_request_head
from mesh_x402.hostdouble.streams import (
    StreamRefusedError,
    accepted_endpoint,
    build_plugin_request,
    is_uuid,
    open_stream_request,
    relay_response,
)

CLIENT_HEAD = (
    b"POST /api/plugins/x402/http/v1/chat/completions?stream=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:3131\r\n"
    b"X-Request-Id: not-a-uuid\r\n"
    b"Expect: 100-continue\r\n"
    b"Connection: keep-alive\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Payment-Signature: abc\r\n\r\n"
)


def split(raw: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers.setdefault(name.lower(), []).append(value)
    return lines[0], headers, body


class TestRequestRewriting:
    def test_076(self) -> None:
        """0.76: UUID x-request-id, no Expect, Connection: close, binding path plus query."""
        head = parse_request_head(CLIENT_HEAD, 64)
        built = build_plugin_request(head, "/v1/chat/completions", b"body!", rewrite=True)
        line, headers, body = split(built.raw)
        assert line == "POST /v1/chat/completions?stream=1 HTTP/1.1"
        assert built.request_id is not None
        assert is_uuid(built.request_id)
        assert headers["x-request-id"] == [built.request_id]
        assert "expect" not in headers
        assert headers["connection"] == ["close"]
        assert "transfer-encoding" not in headers
        assert headers["content-length"] == ["5"]
        assert headers["payment-signature"] == ["abc"]
        assert headers["host"] == ["127.0.0.1:3131"]
        assert body == b"body!"

    def test_076_keeps_a_client_uuid(self) -> None:
        """A client x-request-id that is a UUID passes unchanged."""
        client_id = str(uuid.uuid4())
        head = parse_request_head(
            b"GET /x HTTP/1.1\r\nx-request-id: " + client_id.encode() + b"\r\n\r\n", 64
        )
        built = build_plugin_request(head, "/v1/models", b"", rewrite=True)
        _, headers, _ = split(built.raw)
        assert built.request_id == client_id
        assert headers["x-request-id"] == [client_id]
        assert "content-length" not in headers

    def test_076_mints_one_when_absent(self) -> None:
        """Without a client x-request-id the host still stands by a UUID of its own."""
        head = parse_request_head(b"GET /x HTTP/1.1\r\n\r\n", 64)
        built = build_plugin_request(head, "/v1/models", b"", rewrite=True)
        assert built.request_id is not None
        assert is_uuid(built.request_id)

    def test_066_passes_client_headers(self) -> None:
        """0.66: every client header (x-request-id, Expect) passes; Connection: close."""
        head = parse_request_head(CLIENT_HEAD, 64)
        built = build_plugin_request(head, "/v1/chat/completions", b"body!", rewrite=False)
        _, headers, _ = split(built.raw)
        assert built.request_id is None
        assert headers["x-request-id"] == ["not-a-uuid"]
        assert headers["expect"] == ["100-continue"]
        assert headers["connection"] == ["close"]
        assert headers["content-length"] == ["5"]


def test_open_stream_request_fields() -> None:
    """purpose generic, mode HTTP1, application/http, binding metadata, 30 s advisory idle."""
    binding = pb.HttpBindingManifest(
        binding_id="models", method=pb.HTTP_METHOD_GET, path="/v1/models"
    )
    request = open_stream_request("http-1-1", binding, "GET", 123)
    assert request.stream_id == "http-1-1"
    assert request.purpose == pb.STREAM_PURPOSE_GENERIC
    assert request.mode == pb.STREAM_MODE_HTTP1
    assert request.content_type == "application/http"
    assert json.loads(request.metadata_json) == {
        "binding_id": "models",
        "method": "GET",
        "path": "/v1/models",
    }
    assert request.expected_bytes == 123
    assert request.idle_timeout_ms == 30000


class TestStreamAnswer:
    def reply(self, **fields: object) -> pb.Envelope:
        base: dict[str, object] = {
            "stream_id": "s1",
            "accepted": True,
            "transport_kind": pb.STREAM_TRANSPORT_KIND_UNIX_SOCKET,
            "endpoint": "/tmp/x.sock",
        }
        base.update(fields)
        return pb.Envelope(open_stream_response=pb.OpenStreamResponse(**base))  # type: ignore[arg-type]

    def test_accepted(self) -> None:
        """An accepted Unix-socket stream yields its endpoint."""
        assert accepted_endpoint(self.reply(), "s1") == "/tmp/x.sock"

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"accepted": False, "message": "busy"}, "refused the stream: busy"),
            ({"transport_kind": pb.STREAM_TRANSPORT_KIND_TCP}, "TCP"),
            ({"stream_id": "s2"}, "stream id"),
            ({"endpoint": ""}, "no endpoint"),
        ],
    )
    def test_refused(self, fields: dict[str, object], message: str) -> None:
        """A refusal, a TCP endpoint, a wrong stream id or no endpoint is refused."""
        with pytest.raises(StreamRefusedError, match=message):
            accepted_endpoint(self.reply(**fields), "s1")

    def test_error_reply(self) -> None:
        """An ErrorResponse is refused with its code."""
        reply = pb.Envelope(error_response=pb.ErrorResponse(code=-32601, message="nope"))
        with pytest.raises(StreamRefusedError, match="-32601"):
            accepted_endpoint(reply, "s1")


@pytest.fixture
async def client_pair() -> AsyncIterator[tuple[asyncio.StreamWriter, asyncio.StreamReader]]:
    """A real socket pair: what relay writes to one end, the test reads at the other."""
    left, right = socket.socketpair()
    _, writer = await asyncio.open_unix_connection(sock=left)
    reader, other_writer = await asyncio.open_unix_connection(sock=right)
    yield writer, reader
    other_writer.close()
    if not writer.is_closing():
        writer.close()


def plugin_reader(data: bytes, limit: int = 16 * 1024) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class TestRelay:
    async def test_076_replaces_request_id(
        self, client_pair: tuple[asyncio.StreamWriter, asyncio.StreamReader]
    ) -> None:
        """0.76 drops the plugin's x-request-id, adds its own, and relays the body untouched."""
        writer, reader = client_pair
        response = (
            b"HTTP/1.1 402 Payment Required\r\nX-Request-Id: mine\r\nPAYMENT-REQUIRED: e30=\r\n\r\n"
            b"data: 1\n\n"
        )
        await relay_response(plugin_reader(response), writer, request_id="rid")
        writer.close()
        received = await reader.read()
        line, headers, body = split(received)
        assert line == "HTTP/1.1 402 Payment Required"
        assert headers["x-request-id"] == ["rid"]
        assert headers["payment-required"] == ["e30="]
        assert body == b"data: 1\n\n"

    async def test_066_relays_bytes(
        self, client_pair: tuple[asyncio.StreamWriter, asyncio.StreamReader]
    ) -> None:
        """0.66 relays the plugin's bytes unchanged."""
        writer, reader = client_pair
        response = b"HTTP/1.1 200 OK\r\nX-Request-Id: mine\r\n\r\nok"
        await relay_response(plugin_reader(response), writer, request_id=None)
        writer.close()
        assert await reader.read() == response

    @pytest.mark.parametrize(
        ("response", "message"),
        [
            (b"HTTP/1.1 200 OK\r\nA: b\r\n", "incomplete"),
            (b"HTTP/1.1 200 OK\r\n" + b"A: " + b"b" * 17000 + b"\r\n\r\n", "over 16384 bytes"),
            (
                b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(65)) + b"\r\n",
                "65 header",
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", "status 100"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
        ],
    )
    async def test_076_head_checks(
        self,
        client_pair: tuple[asyncio.StreamWriter, asyncio.StreamReader],
        response: bytes,
        message: str,
    ) -> None:
        """0.76 refuses an incomplete, oversized, over-64-header or non-HTTP head."""
        writer, _ = client_pair
        with pytest.raises(StreamRefusedError, match=message):
            await relay_response(plugin_reader(response), writer, request_id="rid")


async def test_silent_plugin_ends_the_relay(
    client_pair: tuple[asyncio.StreamWriter, asyncio.StreamReader],
) -> None:
    """A side stream that never answers gives a 502 reason instead of a hang."""
    writer, _ = client_pair
    silent = asyncio.StreamReader()
    with pytest.raises(StreamRefusedError, match="no response head"):
        await relay_response(silent, writer, request_id="rid", idle_timeout=0.1)
    body = asyncio.StreamReader()
    body.feed_data(b"partial")
    await relay_response(body, writer, request_id=None, idle_timeout=0.1)
