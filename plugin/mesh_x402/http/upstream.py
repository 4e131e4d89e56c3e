"""The upstream adapter: forwards a paid request to mesh-llm's OpenAI API.

One pool of keep-alive connections per node (`h1_client.OriginPool`), so the
hot path pays no TCP handshake per request, and no general-purpose client's
per-request work either: a forwarded JSON request costs about 0.2 ms of the
gate's CPU here, against about 0.55 ms through aiohttp. Answers stream through as
they arrive: SSE goes through `core.metering.SseUsageTap`, which reads the
usage block and removes the usage-only chunk the client did not ask for; JSON
passes through as is and is metered when it ends.

Transport failures never leave this module raw: they become `UpstreamError`
with a stable reason, so the gate can tell "never reached the model" from
"broke while streaming". An HTTP error status from the upstream is not an
exception: it is an ordinary `UpstreamResponse` whose body the gate may relay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

from mesh_x402.core.metering import (
    SseUsageTap,
    Usage,
    loads_bounded,
    meter_json_body,
    prepare_upstream_body,
)
from mesh_x402.errors import PluginError
from mesh_x402.http.h1_client import Exchange, H1Error, Origin, OriginPool

__all__ = [
    "MAX_METERED_JSON_BYTES",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
]

# A JSON answer bigger than this streams through unmetered (usage unknown).
MAX_METERED_JSON_BYTES: Final = 8 * 1024 * 1024
_MAX_MODELS_BYTES: Final = 4 * 1024 * 1024
# Bytes that would end a header line or the head.
_HEAD_BREAKERS: Final = frozenset("\r\n\x00")
# RFC 3986's reserved and unreserved characters, and "%" of an escape; "#" is
# not allowed in a request target.
_URI_CHARS: Final = "/?[]@!$&'()*+,;=:%-._~"

# Request headers never forwarded: hop-by-hop ones (RFC 9110 7.6.1), the ones
# the client computes itself, and credentials. The payment headers stay here:
# mesh-llm may relay the request to another node, which has no business
# holding the client's signed authorization.
_DROP_REQUEST: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
        "accept-encoding",
        "x-request-id",
        "authorization",
        "cookie",
        "payment-signature",
        "x-payment",
    }
)
# Response headers not passed back: hop-by-hop ones, and the framing ones,
# because the body is re-framed here (decoded, and one SSE chunk may go).
_DROP_RESPONSE: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)


class UpstreamError(PluginError):
    """mesh-llm's API could not give a complete answer.

    Attributes:
        reason: a stable code: `upstream_unreachable` (connection refused or
            not established), `upstream_timeout` (no byte within the timeout),
            `upstream_broken` (the connection or HTTP framing failed), or
            `upstream_bad_answer` (an answer that cannot be used, e.g. a model
            list that is not JSON).
        mid_stream: True when the failure came after the response head, so
            the client may already have bytes of the answer.
    """

    def __init__(self, reason: str, message: str, *, mid_stream: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.mid_stream = mid_stream


def _translate(exc: H1Error, *, mid_stream: bool) -> UpstreamError:
    return UpstreamError(f"upstream_{exc.reason}", str(exc), mid_stream=mid_stream)


class UpstreamResponse:
    """One upstream answer: its head at once, its body as it streams.

    Read the body once with `body()` (or `read()`), then `usage` is known.
    Always `aclose()` it (or use `async with`): closing before the end drops
    the connection, which is how mesh-llm learns to stop generating.

    Attributes:
        status: the upstream's HTTP status.
        headers: its headers as (lower-case name, value) pairs, without the
            hop-by-hop and framing ones.
        request_id: the `x-request-id` that was sent.
        streamed: whether the answer is a 2xx SSE stream.
        usage: the reported usage: for SSE as soon as its chunk has passed,
            for JSON once the body has ended; None until then, and when the
            answer carried none or an unreadable one.
        completion_chars: generated characters passed on so far (SSE, kept
            when the stream breaks or the caller leaves) or in the whole
            answer (JSON, once ended): the input of the fallback estimate.
        first_token_seen: True once body bytes carrying output reached the
            caller and it came back for more (SSE: an event with generated
            output; JSON: any byte of a 2xx body). The gate charges a client
            that disconnects after this and releases one that leaves before.
        complete: True once the body ended normally.
    """

    def __init__(
        self, pool: OriginPool, exchange: Exchange, request_id: str, client_wants_usage: bool
    ) -> None:
        self._pool: OriginPool | None = pool
        self._exchange = exchange
        self.status = exchange.status
        self.headers: list[tuple[str, str]] = [
            (name, value) for name, value in exchange.headers if name not in _DROP_RESPONSE
        ]
        self.request_id = request_id
        content_type = next((v for n, v in exchange.headers if n == "content-type"), "").lower()
        self.streamed = self.ok and content_type.startswith("text/event-stream")
        self._tap = SseUsageTap(strip_usage_chunk=not client_wants_usage) if self.streamed else None
        self._usage: Usage | None = None
        self._completion_chars = 0
        self.first_token_seen = False
        self.complete = False
        self._iterator: AsyncIterator[bytes] | None = None

    @property
    def usage(self) -> Usage | None:
        return self._tap.usage if self._tap is not None else self._usage

    @property
    def completion_chars(self) -> int:
        return self._tap.completion_chars if self._tap is not None else self._completion_chars

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx (the answer is chargeable if it completes)."""
        return 200 <= self.status < 300

    def body(self) -> AsyncIterator[bytes]:
        """The body bytes for the client, each yielded as soon as it can be.

        Raises:
            RuntimeError: called a second time.
            UpstreamError: (while iterating) the stream broke or timed out;
                `mid_stream` is True.
        """
        if self._iterator is not None:
            raise RuntimeError("the upstream body can be read only once")
        self._iterator = self._stream()
        return self._iterator

    async def read(self) -> bytes:
        """The whole body, for callers that need it in one piece."""
        return b"".join([chunk async for chunk in self.body()])

    async def _stream(self) -> AsyncIterator[bytes]:
        tap = self._tap
        meter_json = self.ok and tap is None
        copy = bytearray()
        try:
            # Each arrival as it comes, so an SSE event is not held back.
            while raw := await self._exchange.next_chunk():
                if tap is not None:
                    out = tap.feed(raw)
                    carries_output = tap.output_seen
                else:
                    out = raw
                    carries_output = self.ok
                    if meter_json and len(copy) + len(raw) <= MAX_METERED_JSON_BYTES:
                        copy += raw
                    else:
                        meter_json = False
                if out:
                    yield out
                    self.first_token_seen = self.first_token_seen or carries_output
            if tap is not None:
                tail = tap.close()
                if tail:
                    yield tail
                    self.first_token_seen = self.first_token_seen or tap.output_seen
        except H1Error as exc:
            raise _translate(exc, mid_stream=True) from exc
        finally:
            # After the whole body the connection goes back to the pool; before
            # it, it is dropped, which aborts the request upstream.
            self._finish()
        if meter_json:
            meter = meter_json_body(bytes(copy))
            self._usage = meter.usage
            self._completion_chars = meter.completion_chars
        self.complete = True

    def _finish(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.finish(self._exchange)

    async def aclose(self) -> None:
        """Release the connection; mid-body, this aborts the upstream request."""
        iterator = self._iterator
        if iterator is not None and hasattr(iterator, "aclose"):
            await iterator.aclose()
        self._finish()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class UpstreamClient:
    """A pooled HTTP client for mesh-llm's OpenAI-compatible API.

    Args:
        base_url: e.g. `http://127.0.0.1:9337` (no trailing `/v1`).
        timeout: seconds allowed to connect, and between two arrivals of an
            answer (its head, then each piece of its body); not a limit on a
            whole answer, which a long generation may legitimately exceed.
        max_connections: concurrent upstream requests; more wait for a slot
            (within `timeout`).
    """

    def __init__(self, base_url: str, timeout: float, *, max_connections: int = 64) -> None:
        self._origin = Origin.parse(base_url)
        self._timeout = timeout
        self._max_connections = max_connections
        self._pool: OriginPool | None = None

    def _connections(self) -> OriginPool:
        # Made on first use: its slots belong to the running event loop.
        if self._pool is None:
            self._pool = OriginPool(
                self._origin, timeout=self._timeout, max_connections=self._max_connections
            )
        return self._pool

    def _target(self, path: str) -> str:
        # What is already percent-encoded goes upstream as the client sent it;
        # any other byte outside a URI's characters (a space, CR or LF, 8-bit
        # bytes) is percent-encoded, so a raw query can never split the
        # request line or add a header.
        return self._origin.prefix + quote(
            path, safe=_URI_CHARS, encoding="latin-1", errors="replace"
        )

    def _request(
        self, method: str, path: str, headers: Mapping[str, str], content: bytes | None
    ) -> bytes:
        lines = [f"{method} {self._target(path)} HTTP/1.1\r\nhost: {self._origin.host_header}\r\n"]
        for name, value in headers.items():
            # Parsed client headers never hold these; a value that did would split the head.
            if not _HEAD_BREAKERS.intersection(name) and not _HEAD_BREAKERS.intersection(value):
                lines.append(f"{name}: {value}\r\n")
        if content is not None:
            lines.append(f"content-length: {len(content)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1", errors="replace")
        return head if content is None else head + content

    async def _send(self, request: bytes) -> tuple[OriginPool, Exchange]:
        pool = self._connections()
        try:
            return pool, await pool.send(request)
        except H1Error as exc:
            raise _translate(exc, mid_stream=False) from exc

    async def forward(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        request_id: str,
    ) -> UpstreamResponse:
        """Send one request and return as soon as the response head arrives.

        A streamed body gets `stream_options.include_usage`; the answer's
        usage-only chunk is then removed unless the client asked for it.

        Args:
            method: the HTTP method.
            path: the path (with query), e.g. `/v1/chat/completions`; the
                query as the client's raw bytes decoded as latin-1.
            body: the client's JSON body (after the gate's own edits), or None.
            headers: the client's headers; hop-by-hop, credential and payment
                headers are not forwarded.
            request_id: sent as `x-request-id` (mesh-llm 0.76 keeps it only
                if it is a UUID).

        Raises:
            UpstreamError: no response head (`mid_stream` False).
        """
        out_headers = {
            name: value for name, value in headers.items() if name.lower() not in _DROP_REQUEST
        }
        out_headers["x-request-id"] = request_id
        out_headers["accept-encoding"] = "identity"
        content: bytes | None = None
        client_wants_usage = True
        if body is not None:
            upstream_body, client_wants_usage = prepare_upstream_body(body)
            content = json.dumps(upstream_body, separators=(",", ":")).encode()
            out_headers = {k: v for k, v in out_headers.items() if k.lower() != "content-type"}
            out_headers["content-type"] = "application/json"
        pool, exchange = await self._send(self._request(method, path, out_headers, content))
        return UpstreamResponse(pool, exchange, request_id, client_wants_usage)

    async def get_models(self) -> list[dict[str, Any]]:
        """The upstream's `/v1/models` list (the `data` entries).

        Raises:
            UpstreamError: unreachable, an error status, or not a model list.
        """
        request = self._request("GET", "/v1/models", {"accept-encoding": "identity"}, None)
        pool, exchange = await self._send(request)
        try:
            if exchange.status != 200:
                raise UpstreamError(
                    "upstream_bad_answer", f"/v1/models answered HTTP {exchange.status}"
                )
            content = bytearray()
            while chunk := await exchange.next_chunk():
                content += chunk
                if len(content) > _MAX_MODELS_BYTES:
                    raise UpstreamError("upstream_bad_answer", "/v1/models answer is too large")
        except H1Error as exc:
            raise _translate(exc, mid_stream=False) from exc
        finally:
            pool.finish(exchange)
        try:
            document = loads_bounded(bytes(content))
        except ValueError as exc:
            raise UpstreamError("upstream_bad_answer", "/v1/models answer is not JSON") from exc
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list):
            raise UpstreamError("upstream_bad_answer", "/v1/models answer has no `data` list")
        return [
            entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("id"), str)
        ]

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
