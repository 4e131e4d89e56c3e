"""The management listener: trust rules, limits, routing, buffered bindings, blackboard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from mesh_x402._pb.meshllm.plugin.v1 import plugin_pb2 as pb
from mesh_x402.hostdouble.bindings import find_binding
from mesh_x402.hostdouble.blackboard import Blackboard, BoardItem
from mesh_x402.hostdouble.management import ManagementServer, is_trusted_local

MANIFEST = pb.PluginManifest(
    http_bindings=[
        pb.HttpBindingManifest(
            binding_id="op",
            method=pb.HTTP_METHOD_POST,
            path="/op",
            operation_name="do-op",
            request_body_mode=pb.HTTP_BODY_MODE_BUFFERED,
            response_body_mode=pb.HTTP_BODY_MODE_BUFFERED,
        )
    ]
)


class FakeBackend:
    """A node whose plugin answers invoke requests by echoing them."""

    def __init__(self, *, trusted_only: bool = True, board: Blackboard | None = None) -> None:
        self.plugin_name = "x402"
        self.trusted_local_only = trusted_only
        self.rewrite_streams = trusted_only
        self.board = board
        self.peer_id = "ab" * 32
        self.requests: list[tuple[str, Message]] = []
        self.posted: list[BoardItem] = []
        self.is_error = False

    def binding(self, method: str, path: str) -> pb.HttpBindingManifest | None:
        return find_binding(MANIFEST, method, path)

    def next_stream_id(self) -> str:
        return "http-1-1"

    async def request(self, payload_name: str, message: Message) -> pb.Envelope:
        self.requests.append((payload_name, message))
        assert isinstance(message, pb.InvokeServiceRequest)
        output = json.dumps(
            {"service": message.service_name, "input": json.loads(message.input_json)}
        )
        return pb.Envelope(
            invoke_service_response=pb.InvokeServiceResponse(
                output_json=output, is_error=self.is_error
            )
        )

    def board_posted(self, item: Any) -> None:
        self.posted.append(item)


Serve = Callable[..., Awaitable[tuple[ManagementServer, FakeBackend]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[ManagementServer] = []

    async def start(
        backend: FakeBackend | None = None, **options: Any
    ) -> tuple[ManagementServer, FakeBackend]:
        backend = backend or FakeBackend()
        server = ManagementServer(backend, **options)
        await server.start()
        servers.append(server)
        return server, backend

    yield start
    for server in servers:
        await server.stop()


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class TestTrustRule:
    @pytest.mark.parametrize(
        ("peer", "host", "origin", "trusted"),
        [
            ("127.0.0.1", "127.0.0.1:3131", None, True),
            ("127.0.0.1", "localhost:3131", "http://localhost:3000", True),
            ("127.0.0.1", "LOCALHOST", None, True),
            ("127.0.0.1", "127.8.9.10", None, True),
            ("127.0.0.1", "[::1]:3131", "http://[::1]:8080", True),
            ("::1", None, None, True),
            ("127.0.0.1", "example.com", None, False),
            ("127.0.0.1", "192.168.1.5:3131", None, False),
            ("127.0.0.1", "localhost", "http://evil.example", False),
            ("127.0.0.1", "localhost", "null", False),
            ("10.0.0.2", "localhost", None, False),
            ("", None, None, False),
        ],
    )
    def test_table(self, peer: str, host: str | None, origin: str | None, trusted: bool) -> None:
        """Loopback peer, and Host/Origin when present naming localhost or a loopback IP."""
        assert is_trusted_local(peer, host, origin) is trusted


class TestRouting:
    async def test_buffered_binding(self, serve: Serve) -> None:
        """A buffered binding becomes InvokeServiceRequest; query merged with body keys."""
        server, backend = await serve()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{server.url}/api/plugins/x402/http/op?a=1&b=2", json={"b": 3, "c": [1]}
            )
        assert response.status_code == 200
        assert response.json() == {"service": "do-op", "input": {"a": "1", "b": 3, "c": [1]}}
        name, message = backend.requests[0]
        assert name == "invoke_service_request"
        assert isinstance(message, pb.InvokeServiceRequest)
        assert message.kind == pb.SERVICE_KIND_OPERATION

    async def test_buffered_error_is_502(self, serve: Serve) -> None:
        """is_error from the plugin becomes a 502 carrying the output."""
        server, backend = await serve()
        backend.is_error = True
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{server.url}/api/plugins/x402/http/op", content=b"")
        assert response.status_code == 502

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/plugins/x402/http/op"),
            ("POST", "/api/plugins/x402/http/op/"),
            ("POST", "/api/plugins/x402/http/OP"),
            ("POST", "/api/plugins/other/http/op"),
            ("POST", "/api/plugins/x402/op"),
            ("GET", "/v1/models"),
        ],
    )
    async def test_exact_match_only(self, serve: Serve, method: str, path: str) -> None:
        """Method and path must match a binding exactly; anything else is 404."""
        server, backend = await serve()
        async with httpx.AsyncClient() as client:
            response = await client.request(method, server.url + path)
        assert response.status_code == 404
        assert backend.requests == []

    @pytest.mark.parametrize(
        "headers",
        [{"Host": "example.com"}, {"Origin": "http://evil.example"}, {"Host": "10.1.2.3:3131"}],
    )
    async def test_076_refuses_non_local(self, serve: Serve, headers: dict[str, str]) -> None:
        """0.76: a Host or Origin naming a non-loopback name is 403; the plugin is not asked."""
        server, backend = await serve()
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{server.url}/api/plugins/x402/http/op", headers=headers)
        assert response.status_code == 403
        assert backend.requests == []

    async def test_066_serves_anyone(self, serve: Serve) -> None:
        """0.66 has no authentication on plugin routes."""
        server, _ = await serve(FakeBackend(trusted_only=False))
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{server.url}/api/plugins/x402/http/op", headers={"Host": "example.com"}
            )
        assert response.status_code == 200


class TestLimits:
    async def test_body_over_8_mib_is_413(self, serve: Serve) -> None:
        """A body over 8 MiB is refused with 413 and the client still sees the answer."""
        server, backend = await serve()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{server.url}/api/plugins/x402/http/op", content=b"x" * (8 * 1024 * 1024 + 1)
            )
        assert response.status_code == 413
        assert "8388608-byte limit" in response.json()["error"]
        assert backend.requests == []

    async def test_body_of_8_mib_passes(self, serve: Serve) -> None:
        """Exactly 8 MiB is allowed."""
        server, _ = await serve()
        body = json.dumps({"pad": "x" * (8 * 1024 * 1024 - 20)}).encode()
        assert len(body) <= 8 * 1024 * 1024
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{server.url}/api/plugins/x402/http/op", content=body)
        assert response.status_code == 200

    async def test_expect_continue_gets_100_then_answer(self, serve: Serve) -> None:
        """With Expect: 100-continue the host answers 100 itself before reading the body."""
        server, _ = await serve()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /api/plugins/x402/http/op HTTP/1.1\r\nHost: localhost\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        await writer.drain()
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        response = await reader.read()
        writer.close()
        assert status_of(response) == 200

    async def test_head_over_64_kib_is_431(self, serve: Serve) -> None:
        """A head over 64 KiB is refused with 431."""
        server, _ = await serve()
        data = b"GET /api/plugins/x402/http/op HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        assert status_of(await raw_exchange(server.port, data)) == 431

    async def test_65_headers_is_431(self, serve: Serve) -> None:
        """More than 64 headers is refused with 431."""
        server, _ = await serve()
        headers = b"".join(b"X-%d: v\r\n" % i for i in range(65))
        data = b"POST /api/plugins/x402/http/op HTTP/1.1\r\n" + headers + b"\r\n"
        assert status_of(await raw_exchange(server.port, data)) == 431

    async def test_malformed_head_is_400(self, serve: Serve) -> None:
        """A request line that is not HTTP/1.x is 400."""
        server, _ = await serve()
        assert status_of(await raw_exchange(server.port, b"HELLO THERE\r\n\r\n")) == 400

    async def test_slow_request_is_408(self, serve: Serve) -> None:
        """The whole request must arrive within the deadline (5 s on a real node)."""
        server, backend = await serve(deadline=0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /api/plugins/x402/http/op HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        response = await reader.read()
        writer.close()
        assert status_of(response) == 408
        assert backend.requests == []

    async def test_one_request_per_connection(self, serve: Serve) -> None:
        """The connection closes after one answer; a pipelined second request is not served."""
        server, backend = await serve()
        one = b"POST /api/plugins/x402/http/op HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        response = await raw_exchange(server.port, one + one)
        assert response.count(b"HTTP/1.1 ") == 1
        assert len(backend.requests) == 1


class TestBlackboardRoutes:
    async def test_post_feed_search(self, serve: Serve) -> None:
        """POST /post, GET /feed and GET /search on the blackboard's routes."""
        server, backend = await serve(FakeBackend(board=Blackboard()))
        base = f"{server.url}/api/plugins/blackboard/http"
        async with httpx.AsyncClient() as client:
            posted = await client.post(
                f"{base}/post", json={"text": "GPU hour 0.1", "from": "alice"}
            )
            await client.post(
                f"{base}/post", json={"text": "other", "from": "bob", "peer_id": "cd"}
            )
            feed = await client.get(f"{base}/feed", params={"from": "alice"})
            search = await client.get(f"{base}/search", params={"q": "gpu", "limit": "5"})
        assert posted.status_code == 200
        assert posted.json()["peer_id"] == "ab" * 32
        assert [item["text"] for item in feed.json()] == ["GPU hour 0.1"]
        assert [item["from"] for item in search.json()] == ["alice"]
        assert [item.text for item in backend.posted] == ["GPU hour 0.1", "other"]

    async def test_errors_name_the_problem(self, serve: Serve) -> None:
        """Size and rate-limit errors come back as 502 naming the limit."""
        server, _ = await serve(FakeBackend(board=Blackboard()))
        base = f"{server.url}/api/plugins/blackboard/http"
        async with httpx.AsyncClient() as client:
            big = await client.post(f"{base}/post", json={"text": "a" * 4097, "from": "alice"})
            for _ in range(10):
                await client.post(f"{base}/post", json={"text": "hi", "from": "bob"})
            limited = await client.post(f"{base}/post", json={"text": "hi", "from": "bob"})
            bad_since = await client.get(f"{base}/feed", params={"since": "yesterday"})
        assert big.status_code == 502
        assert "4096-byte limit" in big.json()["error"]
        assert limited.status_code == 502
        assert "rate limit" in limited.json()["error"]
        assert bad_since.status_code == 502
        assert "since" in bad_since.json()["error"]

    async def test_no_board_no_routes(self, serve: Serve) -> None:
        """Without a blackboard (or on a public mesh) the routes do not exist."""
        server, _ = await serve()
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{server.url}/api/plugins/blackboard/http/feed")
        assert response.status_code == 404

    async def test_076_board_is_local_only(self, serve: Serve) -> None:
        """The blackboard routes follow the same trusted-local rule on 0.76."""
        server, _ = await serve(FakeBackend(board=Blackboard()))
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"{server.url}/api/plugins/blackboard/http/feed", headers={"Host": "example.com"}
            )
        assert response.status_code == 403
