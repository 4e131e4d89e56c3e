"""Metering: usage from JSON and SSE answers, the include_usage rewrite, the fallback rule."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mesh_x402.core.metering import (
    SseUsageTap,
    Usage,
    billable_usage,
    estimate_tokens,
    loads_bounded,
    meter_json_body,
    parse_usage,
    prepare_upstream_body,
    prompt_text,
)

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def event(document: Any, eol: bytes = b"\n") -> bytes:
    return b"data: " + json.dumps(document).encode() + eol + eol


def chat_chunk(content: str | None = None, *, role: bool = False, usage: Any = "absent") -> dict:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    document: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage != "absent":
        document["usage"] = usage
    return document


def usage_chunk(usage: Any = USAGE) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def make_stream(eol: bytes = b"\n", *, with_usage: bool = True) -> tuple[bytes, bytes]:
    """A streamed chat answer as sent with include_usage, and the same without its usage chunk."""
    head = (
        event(chat_chunk("", role=True, usage=None), eol)
        + event(chat_chunk("Hello", usage=None), eol)
        + b": a comment line"
        + eol
        + eol
        + event(chat_chunk(" world", usage=None), eol)
    )
    usage = event(usage_chunk(), eol) if with_usage else b""
    done = b"data: [DONE]" + eol + eol
    return head + usage + done, head + done


def run(tap: SseUsageTap, pieces: list[bytes]) -> bytes:
    return b"".join(tap.feed(piece) for piece in pieces) + tap.close()


STREAMS = {
    "lf": make_stream(b"\n"),
    "crlf": make_stream(b"\r\n"),
    "cr": make_stream(b"\r"),
}


class TestSseUsageTapSplits:
    @pytest.mark.parametrize("name", sorted(STREAMS))
    @pytest.mark.parametrize("strip", [False, True])
    def test_every_single_split_gives_the_same_bytes(self, name: str, strip: bool) -> None:
        """However the network splits the stream, the client gets the same bytes."""
        full, stripped = STREAMS[name]
        expected = stripped if strip else full
        for cut in range(len(full) + 1):
            tap = SseUsageTap(strip_usage_chunk=strip)
            assert run(tap, [full[:cut], full[cut:]]) == expected, f"split at {cut}"
            assert tap.usage == Usage(7, 5, 12)
            assert tap.done

    @pytest.mark.parametrize("name", sorted(STREAMS))
    @pytest.mark.parametrize("strip", [False, True])
    def test_byte_by_byte_gives_the_same_bytes(self, name: str, strip: bool) -> None:
        """One byte per read (the worst split) changes nothing either."""
        full, stripped = STREAMS[name]
        tap = SseUsageTap(strip_usage_chunk=strip)
        assert run(tap, [full[i : i + 1] for i in range(len(full))]) == (
            stripped if strip else full
        )
        assert tap.usage == Usage(7, 5, 12)
        assert tap.completion_chars == len("Hello world")

    def test_two_way_splits_around_a_crlf_usage_event(self) -> None:
        """Cuts inside the CR LF pairs that end a dropped event never leak a stray byte."""
        full, stripped = STREAMS["crlf"]
        start = full.index(
            b'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": []'
        )
        for first in range(start, len(full)):
            for second in range(first, min(first + 40, len(full)) + 1):
                tap = SseUsageTap(strip_usage_chunk=True)
                pieces = [full[:first], full[first:second], full[second:]]
                assert run(tap, pieces) == stripped, (first, second)


class TestSseUsageTapLatency:
    def test_a_complete_event_is_returned_at_once(self) -> None:
        """Nothing waits for the next read: an event leaves as soon as its blank line arrives."""
        tap = SseUsageTap(strip_usage_chunk=True)
        first = event(chat_chunk("Hi"))
        assert tap.feed(first) == first

    def test_a_partial_event_is_held_until_its_terminator(self) -> None:
        tap = SseUsageTap(strip_usage_chunk=True)
        whole = event(chat_chunk("Hi"))
        assert tap.feed(whole[:-1]) == b""
        assert tap.feed(whole[-1:]) == whole

    def test_a_trailing_cr_completes_the_event_without_waiting_for_lf(self) -> None:
        tap = SseUsageTap(strip_usage_chunk=False)
        whole = event(chat_chunk("Hi"), b"\r\n")
        assert tap.feed(whole[:-1]) == whole[:-1]
        assert tap.feed(whole[-1:]) == b"\n"

    def test_several_events_in_one_read_all_leave(self) -> None:
        full, _ = STREAMS["lf"]
        tap = SseUsageTap(strip_usage_chunk=False)
        assert tap.feed(full) == full


class TestSseUsageTapUsage:
    def test_usage_chunk_kept_when_the_client_asked(self) -> None:
        full, _ = STREAMS["lf"]
        tap = SseUsageTap(strip_usage_chunk=False)
        assert run(tap, [full]) == full
        assert tap.usage == Usage(7, 5, 12)

    def test_usage_inside_a_chunk_with_choices_is_read_and_never_dropped(self) -> None:
        """Some servers put usage on the last content chunk: it carries output, so it stays."""
        stream = event(chat_chunk("Hi", usage=USAGE)) + b"data: [DONE]\n\n"
        tap = SseUsageTap(strip_usage_chunk=True)
        assert run(tap, [stream]) == stream
        assert tap.usage == Usage(7, 5, 12)

    def test_null_usage_chunks_are_kept(self) -> None:
        stream = event({"choices": [], "usage": None})
        tap = SseUsageTap(strip_usage_chunk=True)
        assert run(tap, [stream]) == stream
        assert tap.usage is None

    def test_the_last_readable_usage_wins(self) -> None:
        later = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
        stream = event(chat_chunk("a", usage=USAGE)) + event(usage_chunk(later))
        tap = SseUsageTap(strip_usage_chunk=True)
        run(tap, [stream])
        assert tap.usage == Usage(7, 9, 16)

    def test_a_malformed_usage_chunk_is_still_removed_but_usage_stays_unknown(self) -> None:
        """It is still the chunk we caused; its counts just cannot be trusted."""
        bad = event(usage_chunk({"prompt_tokens": "many", "completion_tokens": -1}))
        stream = event(chat_chunk("Hi")) + bad + b"data: [DONE]\n\n"
        tap = SseUsageTap(strip_usage_chunk=True)
        assert run(tap, [stream]) == stream.replace(bad, b"")
        assert tap.usage is None

    def test_multi_line_data_is_joined_before_parsing(self) -> None:
        document = json.dumps(usage_chunk(), indent=1).encode()
        lines = b"".join(b"data: " + line + b"\n" for line in document.split(b"\n"))
        stream = lines + b"\n" + b"data: [DONE]\n\n"
        tap = SseUsageTap(strip_usage_chunk=True)
        assert run(tap, [stream]) == b"data: [DONE]\n\n"
        assert tap.usage == Usage(7, 5, 12)

    @pytest.mark.parametrize(
        ("chunk", "output"),
        [
            (chat_chunk("", role=True), False),
            (chat_chunk("x"), True),
            ({"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "t"}]}}]}, True),
            ({"choices": [{"index": 0, "text": "x", "finish_reason": None}]}, True),
            ({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}, False),
        ],
    )
    def test_output_seen_only_for_generated_output(self, chunk: dict, output: bool) -> None:
        """A role marker or an empty finish chunk is not a token the client received."""
        tap = SseUsageTap(strip_usage_chunk=False)
        tap.feed(event(chunk))
        assert tap.output_seen is output

    def test_an_unterminated_last_event_is_passed_and_read_at_close(self) -> None:
        tap = SseUsageTap(strip_usage_chunk=False)
        assert tap.feed(b"data: [DONE]") == b""
        assert tap.close() == b"data: [DONE]"
        assert tap.done


class TestSseUsageTapRobustness:
    @pytest.mark.parametrize(
        "stream",
        [
            b"data: {not json\n\n",
            b"data: [1, 2]\n\n",
            b'data: {"choices": "x", "usage": 5}\n\n',
            b'data: {"choices": [1, null, {"delta": 3}]}\n\n',
            b"data: \xff\xfe\n\n",
            b"data: " + b"[" * 100_000 + b"\n\n",
            b"event: ping\nid: 3\nretry: 10\n\n",
            b"\n\n\n",
            b"data\n\n",
        ],
    )
    @pytest.mark.parametrize("strip", [False, True])
    def test_malformed_events_pass_through_unchanged(self, stream: bytes, strip: bool) -> None:
        tap = SseUsageTap(strip_usage_chunk=strip)
        assert run(tap, [stream]) == stream
        assert tap.usage is None

    def test_an_oversized_event_passes_through_unread(self) -> None:
        """A stream without line ends cannot make the tap hold unbounded memory."""
        tap = SseUsageTap(strip_usage_chunk=True, max_event_bytes=64)
        big = event(usage_chunk())
        out = tap.feed(big[:100])
        assert out == big[:100]
        assert tap.feed(big[100:]) == big[100:]
        assert tap.usage is None
        follow = event(usage_chunk())
        assert tap.feed(follow[:50]) + tap.feed(follow[50:]) == b""

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
    def test_without_stripping_any_bytes_come_out_unchanged(
        self, data: bytes, cuts: list[int]
    ) -> None:
        """Whatever the upstream sends, the tap never raises and never alters it."""
        bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
        tap = SseUsageTap(strip_usage_chunk=False)
        assert run(tap, pieces) == data

    @settings(max_examples=300, deadline=None)
    @given(
        parts=st.lists(
            st.sampled_from(
                [
                    *(b"data: ", b"\n", b"\r", b"\r\n", b"[DONE]", b"{", b"}", b": x", b'"usage"'),
                    event(usage_chunk()),
                    event(chat_chunk("Hi")),
                ]
            ),
            max_size=30,
        ),
        cut=st.integers(0, 2000),
    )
    def test_stripping_is_independent_of_the_split(self, parts: list[bytes], cut: int) -> None:
        """Even on garbage, one read or two give the same bytes, and nothing raises."""
        data = b"".join(parts)
        cut = min(cut, len(data))
        whole = run(SseUsageTap(strip_usage_chunk=True), [data])
        split = run(SseUsageTap(strip_usage_chunk=True), [data[:cut], data[cut:]])
        assert whole == split


class TestDeepNesting:
    """A hostile body nested 200,000 deep must be refused, not crash the process.

    The plugin imports web3, which raises the recursion limit to 100,000; the C
    JSON decoder then overflows the C stack (SIGSEGV) instead of raising.
    """

    @pytest.fixture(autouse=True)
    def web3_recursion_limit(self) -> Iterator[None]:
        before = sys.getrecursionlimit()
        sys.setrecursionlimit(100_000)
        yield
        sys.setrecursionlimit(before)

    def test_tap_passes_a_deep_event_unread(self) -> None:
        stream = b"data: " + b"[" * 200_000 + b"\n\n"
        tap = SseUsageTap(strip_usage_chunk=True, max_event_bytes=1 << 20)
        assert run(tap, [stream]) == stream
        assert tap.usage is None

    def test_json_body_is_unreadable_not_fatal(self) -> None:
        assert meter_json_body(b'{"usage":' * 200_000).usage is None

    def test_loads_bounded_refuses_deep_documents(self) -> None:
        with pytest.raises(ValueError, match="nested deeper than 64"):
            loads_bounded(b"[" * 65 + b"]" * 65)
        assert loads_bounded(b"[" * 64 + b"]" * 64) is not None

    def test_brackets_inside_strings_do_not_count(self) -> None:
        text = "[{" * 5000
        document = chat_chunk(text, usage=USAGE)
        assert loads_bounded(json.dumps(document).encode()) == document
        tap = SseUsageTap(strip_usage_chunk=True)
        tap.feed(event(document))
        assert tap.completion_chars == len(text)
        assert tap.usage == Usage(7, 5, 12)


class TestPrepareUpstreamBody:
    @pytest.mark.parametrize(
        ("body", "options", "wants"),
        [
            ({"stream": True}, {"include_usage": True}, False),
            (
                {"stream": True, "stream_options": {"include_usage": True}},
                {"include_usage": True},
                True,
            ),
            (
                {"stream": True, "stream_options": {"include_usage": False}},
                {"include_usage": True},
                False,
            ),
            (
                {"stream": True, "stream_options": {"continuous_usage_stats": True}},
                {"continuous_usage_stats": True, "include_usage": True},
                False,
            ),
            ({"stream": True, "stream_options": "junk"}, {"include_usage": True}, False),
        ],
    )
    def test_streams_get_include_usage(self, body: dict, options: dict, wants: bool) -> None:
        original = json.loads(json.dumps(body))
        new, client_wants = prepare_upstream_body({"model": "m", **body})
        assert new["stream_options"] == options
        assert new["model"] == "m"
        assert client_wants is wants
        assert body == original, "the caller's body must not change"

    @pytest.mark.parametrize(
        "body", [{"model": "m"}, {"model": "m", "stream": False}, {"stream": "yes"}]
    )
    def test_non_streams_are_unchanged(self, body: dict) -> None:
        new, client_wants = prepare_upstream_body(body)
        assert new == body
        assert client_wants is True


class TestParseUsage:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (USAGE, Usage(7, 5, 12)),
            ({"prompt_tokens": 7, "completion_tokens": 5}, Usage(7, 5, 12)),
            ({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, Usage(0, 0, 0)),
            ({"prompt_tokens": True, "completion_tokens": 5}, None),
            ({"prompt_tokens": -1, "completion_tokens": 5}, None),
            ({"prompt_tokens": 7.0, "completion_tokens": 5}, None),
            ({"prompt_tokens": "7", "completion_tokens": 5}, None),
            ({"completion_tokens": 5}, None),
            (None, None),
            ([7, 5], None),
        ],
    )
    def test_table(self, value: Any, expected: Usage | None) -> None:
        assert parse_usage(value) == expected


class TestMeterJsonBody:
    def test_chat_answer(self) -> None:
        body = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": "Hello"}}], "usage": USAGE}
        ).encode()
        meter = meter_json_body(body)
        assert meter.usage == Usage(7, 5, 12)
        assert meter.completion_chars == 5

    def test_completion_answer_without_usage(self) -> None:
        meter = meter_json_body(json.dumps({"choices": [{"text": "abcdefgh"}]}).encode())
        assert meter.usage is None
        assert meter.completion_chars == 8

    @pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff", b"null", b"[" * 100_000])
    def test_unreadable_bodies_give_unknown_usage(self, body: bytes) -> None:
        assert meter_json_body(body).usage is None


class TestBillableUsage:
    REQUEST: ClassVar[dict[str, Any]] = {"messages": [{"role": "user", "content": "x" * 40}]}

    def test_reported_usage_is_used_as_is(self) -> None:
        reported = Usage(100, 50, 150)
        got = billable_usage(
            reported,
            request_body=self.REQUEST,
            completion_chars=0,
            prompt_ceiling=10,
            completion_ceiling=10,
        )
        assert got == reported

    def test_missing_usage_is_estimated_from_what_was_exchanged(self) -> None:
        got = billable_usage(
            None,
            request_body=self.REQUEST,
            completion_chars=21,
            prompt_ceiling=1000,
            completion_ceiling=1000,
        )
        assert got == Usage(10, 6, 16)

    def test_the_estimate_never_exceeds_the_quoted_ceilings(self) -> None:
        got = billable_usage(
            None,
            request_body=self.REQUEST,
            completion_chars=10_000,
            prompt_ceiling=3,
            completion_ceiling=4,
        )
        assert got == Usage(3, 4, 7)


class TestPromptText:
    @pytest.mark.parametrize(
        ("body", "text"),
        [
            (
                {
                    "messages": [
                        {"role": "system", "content": "a"},
                        {"role": "user", "content": "b"},
                    ]
                },
                "a\nb",
            ),
            (
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}],
                        }
                    ]
                },
                "hi",
            ),
            ({"prompt": "once"}, "once"),
            ({"prompt": ["a", "b", 3]}, "a\nb"),
            ({"messages": "junk", "prompt": 5}, ""),
            ({"messages": [None, {"content": None}]}, ""),
        ],
    )
    def test_table(self, body: dict, text: str) -> None:
        assert prompt_text(body) == text

    @pytest.mark.parametrize(("chars", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (-3, 0)])
    def test_estimate_tokens_rounds_up(self, chars: int, tokens: int) -> None:
        assert estimate_tokens(chars) == tokens
