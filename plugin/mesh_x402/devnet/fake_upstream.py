"""A stand-in for mesh-llm's OpenAI-compatible API, for tests and the devnet.

mesh-llm cannot run here (no model weights, no GPU), so the gate is tested
against this fake, which answers like mesh-llm's llama.cpp front end does:
`/v1/models`, `/v1/chat/completions`, `/v1/completions`, JSON or SSE
(`stream: true`), a usage-only chunk only when `stream_options.include_usage`
is true, `data: [DONE]` at the end, and the client's `x-request-id` echoed.

Token counts are realistic rather than exact: prompt tokens are the prompt's
characters / 4 rounded up, completion tokens `min(max_tokens, model length)`,
and every generated token is four characters of text, so the counts agree
with the text a client sees.

Failures for tests are chosen per model (`FakeModel.failure`) or per request
(the `x-fake-failure` header): see `FAILURES`. Every request is recorded
(`FakeUpstream.requests`) with what the fake did with it, and every TCP
connection is counted by its client address (`FakeUpstream.connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import uvicorn

from mesh_x402.core.metering import estimate_tokens, loads_bounded, prompt_text
from mesh_x402.http.server import bind_tcp

__all__ = [
    "FAILURES",
    "FAILURE_HEADER",
    "FakeModel",
    "FakeUpstream",
    "FakeUpstreamApp",
    "RecordedRequest",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FAILURE_HEADER: Final = "x-fake-failure"
FAILURES: Final = frozenset(
    {
        "http_500",  # answer 500 with an OpenAI error body
        "close_mid_stream",  # send part of the body, then drop the connection
        "hang",  # never send the response head (until the fake stops)
        "stall",  # send the head and the first chunk, then nothing
        "malformed_usage",  # a usage block whose counts are not numbers
        "no_usage",  # no usage block at all, even when asked
    }
)

# Four characters each, so a token's text has the length the counts assume.
_WORDS: Final = (" the", " net", " pay", " fee", " sum", " key", " row", " log")


@dataclass
class FakeModel:
    """One model the fake serves, and how it behaves.

    Attributes:
        id: the model name clients ask for.
        completion_tokens: the answer's length when `max_tokens` allows it.
        chunks: content chunks a streamed answer is split into (at most one
            per token).
        chunk_delay: seconds between two streamed chunks.
        first_byte_delay: seconds before the response head.
        failure: a failure mode from `FAILURES` for every request, or None.
        hold_after_chunks: pause a stream after this many content chunks
            until `FakeUpstream.release()`; lets a test observe the client
            side while the fake is provably not finished.
        owned_by: reported in `/v1/models`.
    """

    id: str
    completion_tokens: int = 32
    chunks: int = 20
    chunk_delay: float = 0.0
    first_byte_delay: float = 0.0
    failure: str | None = None
    hold_after_chunks: int | None = None
    owned_by: str = "mesh-llm"

    def __post_init__(self) -> None:
        if self.failure is not None and self.failure not in FAILURES:
            raise ValueError(f"unknown failure {self.failure!r}; known: {sorted(FAILURES)}")


@dataclass
class RecordedRequest:
    """What the fake received and what it did with it.

    Attributes:
        method: the HTTP method.
        path: the request path.
        query: the raw query string, as sent.
        headers: request headers, lower-case names.
        body: the parsed JSON body (None when absent or not JSON).
        client: the client's (host, port): one value per TCP connection.
        request_id: the `x-request-id` answered.
        status: the status answered (0 until the head is sent).
        chunks_sent: content chunks sent so far (SSE).
        finished: the whole answer was sent.
        disconnected: the client went away before the end.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client: tuple[str, int] | None
    query: bytes = b""
    request_id: str = ""
    status: int = 0
    chunks_sent: int = 0
    finished: bool = False
    disconnected: bool = False
    _release: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class _DeliberateAbort(Exception):  # noqa: N818 (not an error: the fake's chosen failure)
    """Raised inside the app to make uvicorn drop the connection mid-body."""


class _QuietAbort(logging.Filter):
    """Keeps uvicorn from logging the fake's deliberate aborts as errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DeliberateAbort)


_QUIET_ABORT: Final = _QuietAbort()


@dataclass(frozen=True)
class _Plan:
    """How the fake will answer one completion request."""

    model: FakeModel
    chat: bool
    stream: bool
    include_usage: bool
    base: dict[str, Any]
    words: list[str]
    finish: str
    usage: dict[str, Any] | None
    failure: str | None

    @property
    def kind(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def piece(self, text: str, reason: str | None = None) -> dict[str, Any]:
        """One streamed choice carrying `text`."""
        if self.chat:
            return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": reason}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


class FakeUpstreamApp:
    """The ASGI app: mesh-llm's OpenAI API as far as the gate can tell.

    Args:
        models: the models served; replace with `set_models`.
    """

    def __init__(self, models: Iterable[FakeModel]) -> None:
        self.models: dict[str, FakeModel] = {}
        self.set_models(models)
        self.requests: list[RecordedRequest] = []
        self.connections: set[tuple[str, int]] = set()
        self._ids = itertools.count(1)
        self.stopping = asyncio.Event()

    def set_models(self, models: Iterable[FakeModel]) -> None:
        """Replace the served models (the devnet serves different ones per node)."""
        self.models = {model.id: model for model in models}

    def release_all(self) -> None:
        """Let every held stream continue (call on the app's loop)."""
        for record in self.requests:
            record._release.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body: Any = loads_bounded(bytes(raw)) if raw else None
        except (ValueError, RecursionError):
            body = None
        peer = scope.get("client")
        client = (str(peer[0]), int(peer[1])) if peer else None
        if client is not None:
            self.connections.add(client)
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            body=body,
            client=client,
            query=scope.get("query_string", b""),
        )
        record.request_id = headers.get("x-request-id") or (
            f"req-{int(time.time() * 1000)}-{next(self._ids)}"
        )
        self.requests.append(record)
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, record))
        try:
            await self._route(record, send)
        finally:
            watcher.cancel()

    async def _watch_disconnect(self, receive: Receive, record: RecordedRequest) -> None:
        message = await receive()
        if message["type"] == "http.disconnect" and not record.finished:
            record.disconnected = True
            record._release.set()  # a held stream has no one left to wait for

    async def _route(self, record: RecordedRequest, send: Send) -> None:
        refusal = self._refusal(record)
        if refusal is not None:
            status, message, kind, code = refusal
            await self._error(record, send, status, message=message, kind=kind, code=code)
        elif record.path == "/v1/models":
            data = [
                {"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}
                for m in self.models.values()
            ]
            await self._json(record, send, 200, {"object": "list", "data": data})
        else:
            await self._generate(record, self._plan(record), send)

    def _refusal(self, record: RecordedRequest) -> tuple[int, str, str, str | None] | None:
        """Why the request cannot be answered, as (status, message, type, code)."""
        if record.path == "/v1/models":
            return (
                None if record.method == "GET" else (405, "use GET", "invalid_request_error", None)
            )
        if record.path not in ("/v1/chat/completions", "/v1/completions"):
            return 404, f"no route {record.path}", "not_found_error", None
        if record.method != "POST":
            return 405, "use POST", "invalid_request_error", None
        body = record.body
        name = body.get("model") if isinstance(body, dict) else None
        failure = record.headers.get(FAILURE_HEADER)
        refusal: tuple[int, str, str, str | None] | None
        if not isinstance(body, dict):
            refusal = (400, "the body must be a JSON object", "invalid_request_error", None)
        elif not isinstance(name, str) or name not in self.models:
            refusal = (404, f"model {name!r} not found", "invalid_request_error", "model_not_found")
        elif failure is not None and failure not in FAILURES:
            refusal = (400, f"unknown {FAILURE_HEADER} {failure!r}", "invalid_request_error", None)
        else:
            refusal = None
        return refusal

    def _plan(self, record: RecordedRequest) -> _Plan:
        body: dict[str, Any] = record.body
        model = self.models[body["model"]]
        failure = record.headers.get(FAILURE_HEADER) or model.failure
        limit = _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))
        completion = (
            model.completion_tokens if limit is None else min(limit, model.completion_tokens)
        )
        prompt = max(1, estimate_tokens(len(prompt_text(body))))
        usage: dict[str, Any] | None = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if failure == "malformed_usage":
            usage = {"prompt_tokens": "many", "completion_tokens": -1}
        elif failure == "no_usage":
            usage = None
        chat = record.path == "/v1/chat/completions"
        options = body.get("stream_options")
        return _Plan(
            model=model,
            chat=chat,
            stream=body.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            base={
                "id": f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}",
                "created": int(time.time()),
                "model": model.id,
            },
            words=[_WORDS[i % len(_WORDS)] for i in range(completion)],
            finish="length" if limit is not None and limit < model.completion_tokens else "stop",
            usage=usage,
            failure=failure,
        )

    async def _generate(self, record: RecordedRequest, plan: _Plan, send: Send) -> None:
        if plan.model.first_byte_delay:
            await asyncio.sleep(plan.model.first_byte_delay)
        if plan.failure == "hang":
            await self.stopping.wait()
        elif plan.failure == "http_500":
            await self._error(
                record, send, 500, message="fake upstream failure", kind="server_error"
            )
        elif plan.stream:
            await self._stream(record, plan, send)
        else:
            await self._whole(record, plan, send)

    async def _whole(self, record: RecordedRequest, plan: _Plan, send: Send) -> None:
        text = "".join(plan.words)
        choice: dict[str, Any] = {"index": 0, "finish_reason": plan.finish}
        if plan.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        answer: dict[str, Any] = {
            **plan.base,
            "object": "chat.completion" if plan.chat else "text_completion",
            "choices": [choice],
        }
        if plan.usage is not None:
            answer["usage"] = plan.usage
        if plan.failure != "close_mid_stream":
            await self._json(record, send, 200, answer)
            return
        encoded = json.dumps(answer).encode()
        await self._start(record, send, 200, "application/json")
        half = {
            "type": "http.response.body",
            "body": encoded[: len(encoded) // 2],
            "more_body": True,
        }
        await send(half)
        raise _DeliberateAbort

    async def _stream(self, record: RecordedRequest, plan: _Plan, send: Send) -> None:
        model, words = plan.model, plan.words

        async def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
            document: dict[str, Any] = {**plan.base, "object": plan.kind, "choices": choices}
            if plan.include_usage:
                document["usage"] = None  # as OpenAI does on every chunk but the last
            document.update(extra)
            data = b"data: " + json.dumps(document).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await self._start(record, send, 200, "text/event-stream")
        if plan.chat:
            await emit(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
            )
        count = min(model.chunks, len(words))
        for i in range(count):
            # Even without a delay, yield to the loop so a client that left is
            # noticed before the next write (as a real server notices).
            await asyncio.sleep(model.chunk_delay if i else 0)
            if record.disconnected:
                return
            # Counted before the write: a client may read the chunk before this
            # task runs again, and must then find it counted.
            record.chunks_sent += 1
            await emit(
                [
                    plan.piece(
                        "".join(words[i * len(words) // count : (i + 1) * len(words) // count])
                    )
                ]
            )
            if plan.failure == "close_mid_stream" and record.chunks_sent >= max(1, count // 2):
                raise _DeliberateAbort
            if plan.failure == "stall":
                await self.stopping.wait()
                return
            if record.chunks_sent == model.hold_after_chunks:
                await record._release.wait()
        await emit([plan.piece("", plan.finish)])
        if plan.include_usage and plan.usage is not None:
            await emit([], usage=plan.usage)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        record.finished = True

    async def _start(
        self, record: RecordedRequest, send: Send, status: int, content_type: str
    ) -> None:
        record.status = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"x-request-id", record.request_id.encode("latin-1")),
                ],
            }
        )

    async def _json(self, record: RecordedRequest, send: Send, status: int, document: Any) -> None:
        await self._start(record, send, status, "application/json")
        await send({"type": "http.response.body", "body": json.dumps(document).encode()})
        record.finished = True

    async def _error(
        self,
        record: RecordedRequest,
        send: Send,
        status: int,
        *,
        message: str,
        kind: str,
        code: str | None = None,
    ) -> None:
        error = {"message": message, "type": kind, "code": code}
        await self._json(record, send, status, {"error": error})


class FakeUpstream:
    """Serves `FakeUpstreamApp` with uvicorn on 127.0.0.1, in a thread of its own.

    A thread (with its own event loop) rather than a task, so it works the
    same from synchronous code (the devnet) and from async tests, and a test
    that blocks its own loop cannot stall the fake.

    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(self, models: Iterable[FakeModel] = (FakeModel("fake-model"),)) -> None:
        self.app = FakeUpstreamApp(models)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: socket.socket | None = None
        self._ready = threading.Event()
        self.url = ""

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        return self.app.requests

    @property
    def connections(self) -> set[tuple[str, int]]:
        """Client addresses seen: one per TCP connection."""
        return self.app.connections

    def set_models(self, models: Iterable[FakeModel]) -> None:
        """Replace the served models."""
        self.app.set_models(models)

    def release(self) -> None:
        """Let every stream held by `hold_after_chunks` continue."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.app.release_all)

    def start(self) -> str:
        """Bind a free port, start serving, and return the base URL."""
        sock = bind_tcp("127.0.0.1", 0)
        self._socket = sock
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(_QUIET_ABORT)
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the fake upstream did not start")
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def _run(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        # The app's events must belong to this loop (Python 3.10 binds them on creation).
        self.app.stopping = asyncio.Event()
        loop.call_soon(self._ready.set)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving: held, hanging and stalled requests end, connections close."""
        if self._server is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stop_on_loop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
        self._server = None

    def _stop_on_loop(self) -> None:
        self.app.stopping.set()
        self.app.release_all()
        if self._server is not None:
            self._server.should_exit = True

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
