"""Metering: what an upstream answer used, read from its `usage` block.

mesh-llm's OpenAI API reports `usage{prompt_tokens, completion_tokens,
total_tokens}` in a JSON answer, but in a stream only when the request sets
`stream_options.include_usage`. So the gate adds that flag to every streamed
request (`prepare_upstream_body`) and reads the usage from the stream as it
passes (`SseUsageTap`). A client that did not ask for usage must not see the
extra usage-only chunk the flag produces, so the tap removes exactly that
chunk and passes every other byte through unchanged.

Sans-I/O, like h11: bytes in, bytes out, no sockets, no clock, and nothing
here raises on bad upstream bytes, because a malformed answer must never cost
the client its response nor the node its payment record.

Rule for a 2xx answer whose usage is missing or unreadable
(`billable_usage`): the usage is *estimated from what was actually
exchanged*, never taken as the quote's maximum and never as zero. Prompt
tokens are the request's prompt characters / 4, completion tokens the
generated characters the client received / 4 (rounded up; 4 characters per
token is the usual average for English text under BPE tokenizers), each
capped at the quote's ceiling. Why: the payer pays for roughly what it got,
not the maximum it authorized, and the operator is not made to give the work
away. A serving node that strips the usage block gains nothing either way. An
honest mesh-llm always reports usage once asked, so this is only a fallback
for a faulty upstream; the price of the result is still capped at the quote
(`core.pricing.charge_for_usage`), so it never exceeds what was authorized.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_EVENT_BYTES",
    "MAX_JSON_DEPTH",
    "JsonMeter",
    "SseUsageTap",
    "Usage",
    "billable_usage",
    "estimate_tokens",
    "loads_bounded",
    "meter_json_body",
    "parse_usage",
    "prepare_upstream_body",
    "prompt_text",
]

CHARS_PER_TOKEN: Final = 4
MAX_EVENT_BYTES: Final = 1024 * 1024

MAX_JSON_DEPTH: Final = 64

_LINE_END: Final = re.compile(rb"[\r\n]")
# A JSON string (skipped whole, so brackets inside text do not count) or a bracket.
_JSON_NESTING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)

# Keys of a streamed `delta` that carry generated output, as opposed to the
# `role` marker of the first chunk.
_OUTPUT_DELTA_KEYS: Final = (
    "content",
    "reasoning_content",
    "refusal",
    "tool_calls",
    "function_call",
)


def loads_bounded(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing documents nested deeper than `max_depth`.

    Why not plain `json.loads`: importing web3 (through py_ecc) raises the
    interpreter's recursion limit to 100,000, and CPython's C JSON decoder
    trusts that limit, so a body like `[[[[...` 100,000 deep overflows the C
    stack and kills the process (SIGSEGV) instead of raising RecursionError.
    Answers and requests of the OpenAI API nest a handful of levels.

    Raises:
        ValueError: not JSON, or nested too deep.
    """
    if data.count(b"[") + data.count(b"{") > max_depth:
        depth = 0
        for match in _JSON_NESTING.finditer(data):
            token = match.group()
            if token in (b"[", b"{"):
                depth += 1
                if depth > max_depth:
                    raise ValueError(f"JSON nested deeper than {max_depth} levels")
            elif token in (b"]", b"}"):
                depth -= 1
    return json.loads(data)


@dataclass(frozen=True)
class Usage:
    """Token counts of one answer, as the upstream reported them.

    Attributes:
        prompt_tokens: tokens of the prompt (after the chat template).
        completion_tokens: tokens generated, over all choices.
        total_tokens: the upstream's total (the sum when it gave none).
    """

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def _count(value: Any) -> int | None:
    # bool is an int subclass; `true` is not a token count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_usage(value: Any) -> Usage | None:
    """Read an OpenAI `usage` object; None unless its counts are usable.

    `prompt_tokens` and `completion_tokens` must be non-negative integers;
    `total_tokens` may be absent (then it is their sum).
    """
    if not isinstance(value, Mapping):
        return None
    prompt = _count(value.get("prompt_tokens"))
    completion = _count(value.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = _count(value.get("total_tokens"))
    return Usage(prompt, completion, prompt + completion if total is None else total)


def _output_chars(choices: Any) -> tuple[int, bool]:
    """Characters of generated text in `choices`, and whether any output is there."""
    if not isinstance(choices, list):
        return 0, False
    chars = 0
    output = False
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        for part in (choice.get("delta"), choice.get("message")):
            if not isinstance(part, Mapping):
                continue
            for key in _OUTPUT_DELTA_KEYS:
                item = part.get(key)
                if item:
                    output = True
                    if isinstance(item, str):
                        chars += len(item)
        text = choice.get("text")
        if isinstance(text, str) and text:
            output = True
            chars += len(text)
    return chars, output


@dataclass(frozen=True)
class JsonMeter:
    """What a whole JSON answer reports.

    Attributes:
        usage: its usage block, or None when missing or unreadable.
        completion_chars: characters of generated text in its choices.
    """

    usage: Usage | None
    completion_chars: int


def meter_json_body(body: bytes) -> JsonMeter:
    """Read usage and output size from a complete non-streamed answer; never raises."""
    try:
        document = loads_bounded(body)
    except (ValueError, RecursionError):
        return JsonMeter(None, 0)
    if not isinstance(document, Mapping):
        return JsonMeter(None, 0)
    chars, _ = _output_chars(document.get("choices"))
    return JsonMeter(parse_usage(document.get("usage")), chars)


def prepare_upstream_body(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body to forward, and whether the client itself wants usage in the stream.

    A streamed request gets `stream_options.include_usage = true` (other
    stream options are kept) so the answer can be metered. The input is not
    modified.

    Returns:
        (new_body, client_wants_usage). For a non-streamed request the body is
        an unchanged copy and client_wants_usage is True: the usage block is
        part of an ordinary JSON answer, so there is nothing to remove.
    """
    # Shallow: only top-level keys are replaced below, nested values are shared
    # read-only and serialized once (a deep copy cost ~30 us per request).
    new_body: dict[str, Any] = dict(body)
    if new_body.get("stream") is not True:
        return new_body, True
    options = new_body.get("stream_options")
    wants = isinstance(options, Mapping) and options.get("include_usage") is True
    merged = dict(options) if isinstance(options, Mapping) else {}
    merged["include_usage"] = True
    new_body["stream_options"] = merged
    return new_body, wants


def prompt_text(body: Mapping[str, Any]) -> str:
    """The prompt text of a chat or completion request, concatenated.

    Chat: every message's `content` (a string, or the `text` of its text
    parts). Completion: `prompt` (a string or a list of strings). Anything
    else contributes nothing.
    """
    parts: list[str] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    item["text"]
                    for item in content
                    if isinstance(item, Mapping) and isinstance(item.get("text"), str)
                )
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts.extend(item for item in prompt if isinstance(item, str))
    return "\n".join(parts)


def estimate_tokens(chars: int) -> int:
    """Tokens for `chars` characters at `CHARS_PER_TOKEN`, rounded up."""
    return -(-max(chars, 0) // CHARS_PER_TOKEN)


def billable_usage(
    reported: Usage | None,
    *,
    request_body: Mapping[str, Any],
    completion_chars: int,
    prompt_ceiling: int,
    completion_ceiling: int,
) -> Usage:
    """The usage to charge for a 2xx answer (see the module docstring for the rule).

    Args:
        reported: the upstream's usage, or None when missing or unreadable.
        request_body: the client's request, for the prompt estimate.
        completion_chars: generated characters the client received.
        prompt_ceiling: the quote's prompt token ceiling.
        completion_ceiling: the quote's completion token ceiling.

    Returns:
        `reported` unchanged when there is one, else the estimate.
    """
    if reported is not None:
        return reported
    prompt = min(estimate_tokens(len(prompt_text(request_body))), max(prompt_ceiling, 0))
    completion = min(estimate_tokens(completion_chars), max(completion_ceiling, 0))
    return Usage(prompt, completion, prompt + completion)


class SseUsageTap:
    """Passes an SSE byte stream through while reading its usage.

    Feed it the bytes as they arrive; it returns at once every complete event
    (up to and including its blank line) byte for byte, and holds only an
    event whose terminator has not arrived yet. With `strip_usage_chunk`, an
    event whose JSON has a `usage` object and no choices (the chunk
    `include_usage` adds) is dropped instead. Nothing is re-encoded, so the
    client sees exactly what the upstream sent, minus that one chunk.

    Line ends may be LF, CRLF or CR (the SSE rule). A CR at the very end of
    the input is taken as a line end at once (no waiting for a possible LF);
    an LF right after it is then treated as part of it, so the output is the
    same however the stream is split. An event longer than `max_event_bytes`
    is passed through as it comes, unread, so a stream without line ends
    cannot make the tap hold unbounded memory.

    Attributes:
        usage: the last readable usage block seen, or None.
        done: whether `data: [DONE]` was seen.
        output_seen: whether an event carrying generated output was seen.
        completion_chars: characters of generated text seen so far.
    """

    def __init__(self, *, strip_usage_chunk: bool, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._strip = strip_usage_chunk
        self._max_event = max_event_bytes
        self._buffer = bytearray()  # bytes of the event not yet complete
        self._line_start = 0  # offset in _buffer of the line being read
        self._clean_upto = 0  # no line end in _buffer before this offset
        self._data: list[bytes] = []  # `data:` values of the current event
        self._has_field = False  # the current event has a non-blank line
        self._oversized = False  # the current event was flushed unread
        self._skip_lf = False  # a CR just ended a line; an LF next belongs to it
        self._last_dropped = False  # whether the last finished event was dropped
        self.usage: Usage | None = None
        self.done = False
        self.output_seen = False
        self.completion_chars = 0

    def feed(self, data: bytes) -> bytes:
        """Add received bytes; return the bytes to send to the client now."""
        out = bytearray()
        if self._skip_lf and data[:1] == b"\n" and not self._buffer:
            # The LF of a CRLF whose CR ended the previous, already finished event.
            self._skip_lf = False
            if not self._last_dropped:
                out += b"\n"
            data = data[1:]
        self._buffer += data
        self._scan(out)
        if len(self._buffer) > self._max_event:
            out += self._buffer
            self._buffer.clear()
            self._line_start = self._clean_upto = 0
            self._data = []
            self._oversized = True
        return bytes(out)

    def close(self) -> bytes:
        """End of stream: return what is still held (an unterminated event)."""
        rest = bytes(self._buffer)
        tail = rest[self._line_start :]
        if tail:
            self._has_field = True
            if not self._oversized:
                self._read_line(tail)
        drop = self._has_field and self._finish_event()
        self._buffer.clear()
        self._line_start = self._clean_upto = 0
        return b"" if drop else rest

    def _scan(self, out: bytearray) -> None:
        buffer = self._buffer
        start = 0  # where the current event begins; bytes before it are settled
        pos = self._line_start
        while pos < len(buffer):
            if self._skip_lf:
                self._skip_lf = False
                if buffer[pos] == 0x0A:
                    pos += 1
                    self._line_start = pos
                    continue
            match = _LINE_END.search(buffer, max(pos, self._clean_upto))
            if match is None:
                self._clean_upto = len(buffer)
                break
            end = match.start()
            after = end + 1
            if buffer[end] == 0x0D:
                if after == len(buffer):
                    self._skip_lf = True
                elif buffer[after] == 0x0A:
                    after += 1
            line = bytes(buffer[pos:end])
            pos = self._line_start = self._clean_upto = after
            if line:
                self._has_field = True
                if not self._oversized:
                    self._read_line(line)
                continue
            # A blank line ends the event (or stands alone between events).
            dropped = self._has_field and self._finish_event()
            self._last_dropped = dropped
            if not dropped:
                out += buffer[start:pos]
            start = pos
        # Trim settled events once per read, not once per event.
        del buffer[:start]
        self._line_start -= start
        self._clean_upto = max(self._clean_upto - start, 0)

    def _read_line(self, line: bytes) -> None:
        name, sep, value = line.partition(b":")
        if name == b"data" and sep:
            self._data.append(value[1:] if value.startswith(b" ") else value)

    def _finish_event(self) -> bool:
        """Record what the finished event says and reset; True if it must be dropped."""
        drop = False if self._oversized else self._read_event(b"\n".join(self._data))
        self._data = []
        self._has_field = False
        self._oversized = False
        return drop

    def _read_event(self, payload: bytes) -> bool:
        if not payload:
            return False
        if payload.strip() == b"[DONE]":
            self.done = True
            return False
        try:
            chunk = loads_bounded(payload)
        except (ValueError, RecursionError):
            return False
        if not isinstance(chunk, Mapping):
            return False
        choices = chunk.get("choices")
        chars, output = _output_chars(choices)
        self.completion_chars += chars
        self.output_seen = self.output_seen or output
        raw_usage = chunk.get("usage")
        usage = parse_usage(raw_usage)
        if usage is not None:
            self.usage = usage
        return self._strip and choices in (None, []) and isinstance(raw_usage, Mapping)
