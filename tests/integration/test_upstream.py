"""UpstreamClient against the fake mesh-llm API, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from mesh_x402.core.metering import Usage
from mesh_x402.devnet.fake_upstream import FAILURE_HEADER, FakeModel, FakeUpstream
from mesh_x402.http.upstream import UpstreamClient, UpstreamError, UpstreamResponse

pytestmark = pytest.mark.integration

PROMPT = "Say hello to the mesh."  # 22 characters: 6 prompt tokens at 4 per token
CHAT = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12}
MODELS = [
    FakeModel("m", completion_tokens=40, chunks=6),
    FakeModel("held", completion_tokens=40, chunks=6, hold_after_chunks=1),
    FakeModel("broken", failure="close_mid_stream"),
]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(MODELS) as server:
        yield server


@pytest.fixture
async def client(fake: FakeUpstream) -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(fake.url, timeout=10.0)
    yield upstream
    await upstream.aclose()


def stream_body(**extra: object) -> dict[str, object]:
    return {**CHAT, "stream": True, **extra}


def events(raw: bytes) -> list[object]:
    """The JSON documents (and the DONE marker) of an SSE body."""
    out: list[object] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


async def collect(response: UpstreamResponse, into: list[bytes]) -> None:
    """Read the body into `into`, so what arrived before an error can be inspected."""
    async for chunk in response.body():
        into.append(chunk)


async def wait_until(predicate: object, what: str) -> None:
    """Wait for a condition the fake's thread will make true (bounded, not a timing assertion)."""
    for _ in range(500):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


class TestJson:
    async def test_answer_usage_and_request_id(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        """A JSON answer passes unchanged and its usage is read once it ends."""
        headers = {
            "Content-Type": "application/json",
            "PAYMENT-SIGNATURE": "secret-payload",
            "X-PAYMENT": "secret-v1",
            "Authorization": "Bearer k",
            "Connection": "close",
            "User-Agent": "test-client",
        }
        async with await client.forward(
            "POST", "/v1/chat/completions", CHAT, headers, "rid-json"
        ) as response:
            assert response.status == 200
            assert ("x-request-id", "rid-json") in response.headers
            assert response.usage is None, "usage is only known after the body"
            raw = await response.read()
        answer = json.loads(raw)
        assert answer["choices"][0]["message"]["content"]
        assert response.usage == Usage(6, 12, 18)
        assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}
        assert response.completion_chars == 48
        assert response.complete
        assert response.first_token_seen
        received = fake.requests[-1]
        assert received.body == CHAT, "a JSON request is forwarded as the client sent it"
        assert received.headers["x-request-id"] == "rid-json"
        assert received.headers["user-agent"] == "test-client"
        for secret in ("payment-signature", "x-payment", "authorization"):
            assert secret not in received.headers

    async def test_query_goes_upstream_encoded_and_cannot_add_a_header(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        """Escapes pass as sent; 8-bit bytes, spaces, CR and LF are percent-encoded."""
        raw = "a=%2F%26&b=x y&c=\u00c3\u00a9&d=1\r\nInjected: yes"  # é's UTF-8 bytes, as latin-1
        async with await client.forward(
            "POST", f"/v1/chat/completions?{raw}", CHAT, {}, "rid-query"
        ) as response:
            assert response.status == 200
            await response.read()
        received = fake.requests[-1]
        assert received.query == b"a=%2F%26&b=x%20y&c=%C3%A9&d=1%0D%0AInjected:%20yes"
        assert "injected" not in received.headers

    async def test_a_header_value_that_would_split_the_head_is_not_forwarded(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        headers = {"x-evil": "a\r\nInjected: yes", "x-fine": "b"}
        async with await client.forward(
            "POST", "/v1/chat/completions", CHAT, headers, "rid"
        ) as response:
            await response.read()
        received = fake.requests[-1]
        assert "injected" not in received.headers
        assert "x-evil" not in received.headers
        assert received.headers["x-fine"] == "b"

    async def test_completions_endpoint(self, client: UpstreamClient) -> None:
        body = {"model": "m", "prompt": "abcdefgh", "max_tokens": 3}
        async with await client.forward("POST", "/v1/completions", body, {}, "rid") as response:
            answer = json.loads(await response.read())
        assert answer["object"] == "text_completion"
        assert response.usage == Usage(2, 3, 5)

    async def test_models(self, client: UpstreamClient) -> None:
        models = await client.get_models()
        assert [m["id"] for m in models] == ["m", "held", "broken"]


class TestStream:
    async def test_usage_chunk_removed_when_the_client_did_not_ask(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        async with await client.forward(
            "POST", "/v1/chat/completions", stream_body(), {}, "rid"
        ) as response:
            assert response.streamed
            raw = await response.read()
        assert fake.requests[-1].body["stream_options"] == {"include_usage": True}
        documents = events(raw)
        assert documents[-1] == "[DONE]"
        assert all(doc == "[DONE]" or doc["choices"] for doc in documents), documents
        assert response.usage == Usage(6, 12, 18)
        content = "".join(
            doc["choices"][0]["delta"].get("content", "") for doc in documents if doc != "[DONE]"
        )
        assert len(content) == 48 == response.completion_chars

    async def test_usage_chunk_kept_when_the_client_asked(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        body = stream_body(stream_options={"include_usage": True})
        async with await client.forward(
            "POST", "/v1/chat/completions", body, {}, "rid"
        ) as response:
            raw = await response.read()
        documents = events(raw)
        assert documents[-2]["choices"] == []
        assert documents[-2]["usage"]["completion_tokens"] == 12
        assert response.usage == Usage(6, 12, 18)

    async def test_first_bytes_arrive_while_the_upstream_is_still_generating(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        """The first token reaches the caller while the fake provably has not sent chunk 2."""
        body = {**stream_body(), "model": "held"}
        response = await client.forward("POST", "/v1/chat/completions", body, {}, "rid")
        chunks = response.body()
        seen = b""
        while b'"content": " ' not in seen:
            seen += await chunks.__anext__()
        record = fake.requests[-1]
        assert record.chunks_sent == 1
        assert not record.finished
        assert not response.first_token_seen, "the token is counted once the caller took it"
        fake.release()
        rest = b"".join([chunk async for chunk in chunks])
        assert response.first_token_seen
        # The fake marks its answer finished after its last send returns, on its own
        # thread: the caller may hold every byte a moment before.
        await wait_until(lambda: record.finished, "the fake to finish its answer")
        assert events(seen + rest)[-1] == "[DONE]"
        assert response.complete
        await response.aclose()

    async def test_completions_stream(self, client: UpstreamClient) -> None:
        body = {"model": "m", "prompt": "abcd", "max_tokens": 5, "stream": True}
        async with await client.forward("POST", "/v1/completions", body, {}, "rid") as response:
            documents = events(await response.read())
        assert "".join(d["choices"][0]["text"] for d in documents if d != "[DONE]") == " the" + (
            " net pay fee sum"
        )
        assert response.usage == Usage(1, 5, 6)


class TestPooling:
    async def test_sequential_requests_reuse_one_connection(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        for i in range(6):
            body = stream_body() if i % 2 else CHAT
            async with await client.forward(
                "POST", "/v1/chat/completions", body, {}, f"rid-{i}"
            ) as response:
                await response.read()
        await client.get_models()
        assert len(fake.requests) == 7
        assert len(fake.connections) == 1

    async def test_sixteen_streams_run_at_once(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        """The pool does not serialize concurrent requests: 16 streams are open together."""
        body = {**stream_body(), "model": "held"}

        async def first_token(i: int) -> tuple[UpstreamResponse, AsyncIterator[bytes]]:
            response = await client.forward("POST", "/v1/chat/completions", body, {}, f"r{i}")
            chunks = response.body()
            seen = b""
            while b'"content": " ' not in seen:
                seen += await chunks.__anext__()
            return response, chunks

        opened = await asyncio.gather(*(first_token(i) for i in range(16)))
        assert len(fake.connections) == 16
        assert not any(record.finished for record in fake.requests)
        fake.release()
        for response, chunks in opened:
            async for _ in chunks:
                pass
            assert response.usage == Usage(6, 12, 18)
            await response.aclose()


class TestFailures:
    async def test_http_500_is_surfaced_as_a_status(self, client: UpstreamClient) -> None:
        async with await client.forward(
            "POST", "/v1/chat/completions", CHAT, {FAILURE_HEADER: "http_500"}, "rid"
        ) as response:
            assert response.status == 500
            assert not response.ok
            error = json.loads(await response.read())
        assert error["error"]["type"] == "server_error"
        assert response.usage is None
        assert not response.first_token_seen, "an error body is not a token"

    @pytest.mark.parametrize("stream", [True, False])
    async def test_close_mid_stream_raises_after_the_partial_body(
        self, client: UpstreamClient, stream: bool
    ) -> None:
        body = {**CHAT, "model": "broken", "stream": stream}
        response = await client.forward("POST", "/v1/chat/completions", body, {}, "rid")
        assert response.status == 200
        received: list[bytes] = []
        with pytest.raises(UpstreamError) as caught:
            await collect(response, received)
        await response.aclose()
        assert caught.value.reason == "upstream_broken"
        assert caught.value.mid_stream
        assert received, "what arrived before the break was passed on"
        assert not response.complete
        assert response.usage is None
        if stream:
            assert response.first_token_seen
            # What did reach the client stays known, for the fallback estimate.
            assert response.completion_chars > 0

    async def test_connection_refused(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        upstream = UpstreamClient(f"http://127.0.0.1:{port}", timeout=5.0)
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.forward("POST", "/v1/chat/completions", CHAT, {}, "rid")
            assert caught.value.reason == "upstream_unreachable"
            assert not caught.value.mid_stream
            with pytest.raises(UpstreamError):
                await upstream.get_models()
        finally:
            await upstream.aclose()

    async def test_no_response_head_in_time(self, fake: FakeUpstream) -> None:
        upstream = UpstreamClient(fake.url, timeout=0.3)
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.forward(
                    "POST", "/v1/chat/completions", CHAT, {FAILURE_HEADER: "hang"}, "rid"
                )
            assert caught.value.reason == "upstream_timeout"
            assert not caught.value.mid_stream
        finally:
            await upstream.aclose()

    async def test_stream_stalls_mid_way(self, fake: FakeUpstream) -> None:
        upstream = UpstreamClient(fake.url, timeout=0.3)
        try:
            response = await upstream.forward(
                "POST", "/v1/chat/completions", stream_body(), {FAILURE_HEADER: "stall"}, "rid"
            )
            with pytest.raises(UpstreamError) as caught:
                async for _ in response.body():
                    pass
            await response.aclose()
            assert caught.value.reason == "upstream_timeout"
            assert caught.value.mid_stream
            assert response.first_token_seen
        finally:
            await upstream.aclose()

    async def test_malformed_usage_leaves_usage_unknown(self, client: UpstreamClient) -> None:
        async with await client.forward(
            "POST", "/v1/chat/completions", stream_body(), {FAILURE_HEADER: "malformed_usage"}, "r"
        ) as response:
            raw = await response.read()
        assert response.complete
        assert response.usage is None
        assert b'"usage": {' not in raw, "the unasked usage chunk is removed even when malformed"
        assert response.completion_chars == 48

    async def test_closing_early_aborts_the_upstream_request(
        self, fake: FakeUpstream, client: UpstreamClient
    ) -> None:
        """A client that leaves makes the upstream stop, as mesh-llm does on a dropped stream."""
        body = {**stream_body(), "model": "held"}
        response = await client.forward("POST", "/v1/chat/completions", body, {}, "rid")
        chunks = response.body()
        seen = b""
        while b'"content": " ' not in seen:
            seen += await chunks.__anext__()
        await response.aclose()
        assert response.completion_chars > 0, "what was passed on stays counted"
        record = fake.requests[-1]
        await wait_until(lambda: record.disconnected, "the fake saw the client leave")
        assert not record.finished
        assert not response.complete

    async def test_body_can_be_read_only_once(self, client: UpstreamClient) -> None:
        async with await client.forward(
            "POST", "/v1/chat/completions", CHAT, {}, "rid"
        ) as response:
            await response.read()
            with pytest.raises(RuntimeError):
                response.body()
