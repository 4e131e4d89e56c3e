"""The blackboard stand-in: size and rate limits, feed and search, TTL and cap."""

from __future__ import annotations

import pytest
from mesh_x402.hostdouble.blackboard import (
    MAX_ITEMS,
    Blackboard,
    BoardError,
    BoardItem,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestPost:
    def test_item_shape(self) -> None:
        """An item has id, from, peer_id, timestamp (s) and text."""
        board = Blackboard(Clock(1234.5))
        item = board.post("hello", "alice", "ab" * 32)
        assert item.to_json() == {
            "id": item.id,
            "from": "alice",
            "peer_id": "ab" * 32,
            "timestamp": 1234,
            "text": "hello",
        }

    def test_size_limit_names_the_size(self) -> None:
        """4096 bytes pass; 4097 are refused with a message naming the limit."""
        board = Blackboard(Clock())
        board.post("a" * 4096, "alice", "p")
        with pytest.raises(BoardError, match="4097 bytes, over the 4096-byte limit"):
            board.post("a" * 4097, "bob", "p")
        with pytest.raises(BoardError, match="over the 4096-byte limit"):
            board.post("é" * 2049, "bob", "p")

    def test_rate_limit_per_author_per_minute(self) -> None:
        """The 11th post in a minute by one author is refused; others may post; it recovers."""
        clock = Clock()
        board = Blackboard(clock)
        for n in range(10):
            board.post(f"m{n}", "alice", "p")
        with pytest.raises(BoardError, match="rate limit"):
            board.post("m10", "alice", "p")
        board.post("hi", "bob", "p")
        clock.now += 60
        board.post("m10", "alice", "p")

    @pytest.mark.parametrize(
        ("text", "author", "peer_id", "message"),
        [
            (None, "a", "p", "text must be a string"),
            ("", "a", "p", "text must not be empty"),
            ("x", 5, "p", "from must be a string"),
            ("x", "a", None, "peer_id must be a string"),
        ],
    )
    def test_bad_fields(self, text: object, author: object, peer_id: object, message: str) -> None:
        """Missing or mistyped fields are named."""
        with pytest.raises(BoardError, match=message):
            Blackboard(Clock()).post(text, author, peer_id)


class TestRead:
    def test_feed_filters_and_orders(self) -> None:
        """Newest first; `since` is exclusive; `from` filters by author; `limit` caps."""
        clock = Clock(100.0)
        board = Blackboard(clock)
        board.post("one", "alice", "p")
        clock.now = 200.0
        board.post("two", "bob", "p")
        clock.now = 300.0
        board.post("three", "alice", "p")
        assert [i.text for i in board.feed()] == ["three", "two", "one"]
        assert [i.text for i in board.feed(since=100)] == ["three", "two"]
        assert [i.text for i in board.feed(author="alice")] == ["three", "one"]
        assert [i.text for i in board.feed(limit=1)] == ["three"]
        with pytest.raises(BoardError, match="limit"):
            board.feed(limit=-1)

    def test_search_is_case_insensitive(self) -> None:
        """Search matches a substring of the text, ignoring case."""
        board = Blackboard(Clock())
        board.post("Price of GPU time", "alice", "p")
        board.post("unrelated", "bob", "p")
        assert [i.text for i in board.search("gpu")] == ["Price of GPU time"]
        assert board.search("absent") == []

    def test_ttl_and_cap(self) -> None:
        """Items expire after 48 h, and only the newest 500 are kept."""
        clock = Clock(0.0)
        board = Blackboard(clock)
        board.post("old", "alice", "p")
        clock.now = 48 * 3600 + 1
        assert board.feed() == []
        for n in range(MAX_ITEMS + 5):
            board.add(
                BoardItem(id=n, author="g", peer_id="p", timestamp=int(clock.now) + n, text=f"{n}")
            )
        items = board.feed(limit=1000)
        assert len(items) == MAX_ITEMS
        assert items[-1].text == "5"

    def test_gossip_add_is_idempotent(self) -> None:
        """A gossiped item is taken once."""
        board = Blackboard(Clock())
        item = BoardItem(id=7, author="a", peer_id="p", timestamp=int(Clock().now), text="x")
        assert board.add(item)
        assert not board.add(item)
        assert len(board.feed()) == 1
