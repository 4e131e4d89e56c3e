"""The HTTP server as the host uses it: raw HTTP/1.1 on a Unix socket, half-closed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mesh_x402.http.placeholder import placeholder_app
from mesh_x402.http.server import ASGIApp, HttpServer, Receive, Scope, Send, bind_tcp
from structlog.testing import capture_logs

WAIT = 10.0

REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    b"Host: 127.0.0.1:3131\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: close\r\n"
    b"\r\n{}"
)


async def exchange(path: Path, request: bytes = REQUEST) -> bytes:
    """What the host does: write the whole request, half-close, read to EOF."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(request)
    await writer.drain()
    writer.write_eof()
    response = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    return response


def split(response: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    return int(status_line.split()[1]), headers, body  # type: ignore[return-value]


def headers_app(headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        length = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers + length})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture
async def serve_app(tmp_path) -> AsyncIterator:
    servers: list[HttpServer] = []

    async def start(app: ASGIApp, *, tcp: bool = False) -> tuple[Path, tuple[str, int] | None]:
        server = HttpServer(app)
        path = tmp_path / "http.sock"
        server.listen_unix(path)
        address = server.listen_tcp("127.0.0.1", 0) if tcp else None
        await server.start()
        servers.append(server)
        return path, address

    yield start
    for server in servers:
        await server.stop()


class TestUnixSocket:
    async def test_half_closed_request_gets_the_whole_response(self, serve_app):
        """The host half-closes after the request; the response must still arrive."""
        path, _ = await serve_app(placeholder_app)
        status, headers, body = split(await exchange(path))
        assert status == 501
        assert ("content-type", "application/json") in headers
        assert json.loads(body) == {
            "error": {"message": "payment gate not yet available", "type": "not_implemented"}
        }

    async def test_socket_is_private_and_replaces_a_stale_one(self, tmp_path, serve_app):
        """A socket file left by a killed predecessor does not stop a respawn."""
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(tmp_path / "http.sock"))
        dead.close()  # the file stays, as after a SIGKILL
        path, _ = await serve_app(placeholder_app)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        status, _, _ = split(await exchange(path))
        assert status == 501

    async def test_large_request_head_is_accepted(self, serve_app):
        """The host passes heads up to 64 KiB; uvicorn's own 16 KiB limit must not apply."""
        path, _ = await serve_app(placeholder_app)
        big = b"X-Big: " + b"a" * 40_000 + b"\r\n"
        request = REQUEST.replace(b"Connection: close\r\n", b"Connection: close\r\n" + big)
        status, _, _ = split(await exchange(path, request))
        assert status == 501

    async def test_request_head_over_65_kib_gets_431(self, serve_app):
        path, _ = await serve_app(placeholder_app)
        big = b"X-Big: " + b"a" * 70_000 + b"\r\n"
        request = REQUEST.replace(b"Connection: close\r\n", b"Connection: close\r\n" + big)
        with capture_logs() as logs:
            status, _, body = split(await exchange(path, request))
        assert status == 431
        assert body == b"request head exceeds 65 KiB\r\n"
        assert any(entry["event"] == "http.request_head_refused" for entry in logs)

    async def test_a_request_pipelined_behind_a_refused_head_is_not_served(self, serve_app):
        served: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            served.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        path, _ = await serve_app(app)
        big = b"X-Big: " + b"a" * 70_000 + b"\r\n"
        refused = b"GET /big HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n"
        behind = b"GET /behind HTTP/1.1\r\nHost: x\r\n\r\n"
        status, _, _ = split(await exchange(path, refused + behind))
        assert status == 431
        assert served == []

    async def test_a_head_that_never_ends_is_cut_off(self, serve_app):
        """llhttp keeps no head limit: the server stops reading and closes the
        connection instead of buffering an endless header line."""
        path, _ = await serve_app(placeholder_app)
        reader, writer = await asyncio.open_unix_connection(str(path))
        sent = 0
        with capture_logs() as logs:
            try:
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nX-Big: ")
                while sent < 8 * 1024 * 1024:
                    writer.write(b"a" * 65536)
                    await writer.drain()
                    sent += 65536
            except ConnectionError:
                pass
            try:
                answer = await asyncio.wait_for(reader.read(), WAIT)
            except ConnectionError:
                answer = b""  # closed with our bytes unread: a reset
            writer.close()
        assert sent < 8 * 1024 * 1024, "the server kept reading"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        assert any(entry["event"] == "http.request_head_refused" for entry in logs)

    async def test_keep_alive_requests_each_get_the_head_limit_afresh(self, serve_app):
        """Heads just under the limit, one after another on one connection, all pass."""
        _, address = await serve_app(placeholder_app, tcp=True)
        assert address is not None
        big = b"X-Big: " + b"a" * 60_000 + b"\r\n"
        one = REQUEST.replace(b"Connection: close\r\n", big)
        reader, writer = await asyncio.open_connection(*address)
        try:
            for _ in range(3):
                writer.write(one)
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
                assert head.startswith(b"HTTP/1.1 501 ")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
        finally:
            writer.close()

    async def test_incomplete_request_at_eof_is_closed(self, serve_app):
        """A request cut short gets no response and no hang."""
        path, _ = await serve_app(placeholder_app)
        response = await exchange(path, REQUEST[:-1])
        assert response == b""

    async def test_stop_removes_the_socket(self, tmp_path):
        server = HttpServer(placeholder_app)
        server.listen_unix(tmp_path / "http.sock")
        await server.start()
        await server.stop()
        assert not (tmp_path / "http.sock").exists()


class TestGateway:
    async def test_same_app_on_tcp(self, serve_app):
        _, address = await serve_app(placeholder_app, tcp=True)
        assert address is not None
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{address[0]}:{address[1]}/v1/models")
        assert response.status_code == 501
        assert response.json()["error"]["type"] == "not_implemented"

    def test_gateway_sockets_disable_nagle(self):
        """Head and body leave at once instead of waiting ~40 ms for a delayed ACK:
        the listening socket sets TCP_NODELAY, which accepted sockets inherit."""
        listener = bind_tcp("127.0.0.1", 0)
        try:
            client = socket.create_connection(listener.getsockname()[:2])
            accepted, _ = listener.accept()
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            accepted.close()
            client.close()
        finally:
            listener.close()

    async def test_client_leaving_is_seen_on_the_gateway(self, serve_app):
        """A TCP client that closes after its request is a disconnect, not a half-close."""
        disconnected = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        _, address = await serve_app(app, tcp=True)
        assert address is not None
        _reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(disconnected.wait(), WAIT)
        writer.close()


class TestHeadLimits:
    """A 0.76 host refuses heads over 16 KiB or 64 headers: they never leave us."""

    async def test_head_within_limits_passes(self, serve_app):
        headers = [(f"x-h{i}".encode(), b"v") for i in range(50)]
        path, _ = await serve_app(headers_app(headers))
        status, got, body = split(await exchange(path))
        assert (status, body) == (200, b"ok")
        assert ("x-h49", "v") in got

    @pytest.mark.parametrize(
        "headers",
        [
            [(f"x-h{i}".encode(), b"v") for i in range(63)],
            [(b"x-big", b"a" * 17_000)],
        ],
        ids=["too-many", "too-large"],
    )
    async def test_head_over_limits_becomes_a_small_500(self, serve_app, headers):
        path, _ = await serve_app(headers_app(headers))
        response = await exchange(path)
        status, got, body = split(response)
        assert status == 500
        assert len(got) <= 64
        assert len(response.partition(b"\r\n\r\n")[0]) < 16 * 1024
        assert json.loads(body)["error"]["type"] == "server_error"


async def test_app_exception_is_logged_as_an_event(serve_app):
    """uvicorn's own error report goes to the plugin's structured log, not raw stderr."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("app bug")

    path, _ = await serve_app(broken)
    with capture_logs() as logs:
        status, _, _ = split(await exchange(path))
    assert status == 500
    errors = [entry for entry in logs if entry["event"] == "http.server_error"]
    assert errors
    assert errors[0]["log_level"] == "error"
    assert "Exception in ASGI application" in errors[0]["message"]
