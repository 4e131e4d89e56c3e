"""The upstream adapter: forwards a paid request to mesh-llm's OpenAI API.

One pooled aiohttp `ClientSession` per node, so the hot path does not pay a
TCP handshake per request. aiohttp rather than httpx: its C HTTP parser
makes a forwarded request about 0.5 ms cheaper, a quarter of the gate's
+2 ms target over a direct call. Answers stream through as they arrive: SSE
goes through `core.metering.SseUsageTap`, which reads the usage block and
removes the usage-only chunk the client did not ask for; JSON passes through
as is and is metered when it ends.

aiohttp exceptions never leave this module: they become `UpstreamError` with a
stable reason, so the gate can tell "never reached the model" from "broke
while streaming". An HTTP error status from the upstream is not an exception:
it is an ordinary `UpstreamResponse` whose body the gate may relay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from mesh_x402.core.metering import (
    SseUsageTap,
    Usage,
    loads_bounded,
    meter_json_body,
    prepare_upstream_body,
)
from mesh_x402.errors import PluginError

__all__ = [
    "MAX_METERED_JSON_BYTES",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamResponse",
]

# A JSON answer bigger than this streams through unmetered (usage unknown).
MAX_METERED_JSON_BYTES: Final = 8 * 1024 * 1024
_MAX_MODELS_BYTES: Final = 4 * 1024 * 1024
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


# What aiohttp raises when the upstream fails: its own errors, and timeouts
# (asyncio.TimeoutError is not the builtin TimeoutError before Python 3.11).
_CLIENT_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError)


def _translate(exc: BaseException, *, mid_stream: bool) -> UpstreamError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("upstream_unreachable", f"cannot connect to the upstream: {exc}")
    problem = str(exc) or type(exc).__name__  # aiohttp's timeouts carry no message
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError(
            "upstream_timeout",
            f"the upstream did not answer in time: {problem}",
            mid_stream=mid_stream,
        )
    return UpstreamError(
        "upstream_broken", f"the upstream connection failed: {problem}", mid_stream=mid_stream
    )


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
        self, response: aiohttp.ClientResponse, request_id: str, client_wants_usage: bool
    ) -> None:
        self._response = response
        self.status = response.status
        self.headers: list[tuple[str, str]] = [
            (name.lower(), value)
            for name, value in response.headers.items()
            if name.lower() not in _DROP_RESPONSE
        ]
        self.request_id = request_id
        content_type = response.headers.get("content-type", "").lower()
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
            # iter_any: each read as it arrives, so an SSE event is not held back.
            async for raw in self._response.content.iter_any():
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
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, mid_stream=True) from exc
        finally:
            # After the whole body the connection is back in the pool already;
            # before it, closing drops the connection and so aborts the request.
            self._response.close()
        if meter_json:
            meter = meter_json_body(bytes(copy))
            self._usage = meter.usage
            self._completion_chars = meter.completion_chars
        self.complete = True

    async def aclose(self) -> None:
        """Release the connection; mid-body, this aborts the upstream request."""
        iterator = self._iterator
        if iterator is not None and hasattr(iterator, "aclose"):
            await iterator.aclose()
        self._response.close()

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
        timeout: seconds allowed to connect, and between two bytes of an
            answer; not a limit on a whole answer, which a long generation
            may legitimately exceed.
        max_connections: concurrent upstream requests; more wait for a slot
            (within `timeout`).
    """

    def __init__(self, base_url: str, timeout: float, *, max_connections: int = 64) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=max(1, self._max_connections),
                    # Below the 5 s idle timeout common servers use (uvicorn,
                    # many proxies), so a pooled connection is not reused just
                    # as the server closes it.
                    keepalive_timeout=4.0,
                ),
                timeout=self._timeout,
                # Loopback traffic must never go through an environment proxy.
                trust_env=False,
                # No cookie jar: the gate relays, it keeps no client state.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _url(self, path: str) -> URL:
        # What is already percent-encoded goes upstream as the client sent it;
        # any other byte outside a URI's characters (a space, CR or LF, 8-bit
        # bytes) is percent-encoded, so a raw query can never split the
        # request line or add a header.
        quoted = quote(path, safe=_URI_CHARS, encoding="latin-1", errors="replace")
        return URL(self._base_url + quoted, encoded=True)

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
        try:
            response = await self._client().request(
                method, self._url(path), data=content, headers=out_headers, allow_redirects=False
            )
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, mid_stream=False) from exc
        return UpstreamResponse(response, request_id, client_wants_usage)

    async def get_models(self) -> list[dict[str, Any]]:
        """The upstream's `/v1/models` list (the `data` entries).

        Raises:
            UpstreamError: unreachable, an error status, or not a model list.
        """
        try:
            async with self._client().get(
                self._url("/v1/models"),
                headers={"accept-encoding": "identity"},
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise UpstreamError(
                        "upstream_bad_answer", f"/v1/models answered HTTP {response.status}"
                    )
                content = bytearray()
                async for chunk in response.content.iter_any():
                    content += chunk
                    if len(content) > _MAX_MODELS_BYTES:
                        raise UpstreamError("upstream_bad_answer", "/v1/models answer is too large")
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, mid_stream=False) from exc
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
        if self._session is not None:
            await self._session.close()
            self._session = None
