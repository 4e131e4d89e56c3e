"""A stand-in for mesh-llm's blackboard, as another plugin sees it over HTTP.

Items are `{id, from, peer_id, timestamp, text}`; text is at most 4096
bytes; an author may post 10 times a minute; items live 48 h and the newest
500 are kept. The routes are buffered bindings of the blackboard plugin, so
like any buffered binding an error comes back as 502 with a JSON body that
names the problem (the size or the rate limit).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_ITEMS",
    "MAX_TEXT_BYTES",
    "POSTS_PER_MINUTE",
    "TTL_SECONDS",
    "Blackboard",
    "BoardError",
    "BoardItem",
]

MAX_TEXT_BYTES: Final = 4096
POSTS_PER_MINUTE: Final = 10
TTL_SECONDS: Final = 48 * 3600
MAX_ITEMS: Final = 500
_DEFAULT_LIMIT: Final = 50


class BoardError(ValueError):
    """A post or query the blackboard refuses; the message names why."""


@dataclass(frozen=True)
class BoardItem:
    """One blackboard item."""

    id: int
    author: str
    peer_id: str
    timestamp: int
    text: str

    def to_json(self) -> dict[str, Any]:
        """The item as the HTTP routes return it."""
        return {
            "id": self.id,
            "from": self.author,
            "peer_id": self.peer_id,
            "timestamp": self.timestamp,
            "text": self.text,
        }


class Blackboard:
    """One node's in-memory board.

    Args:
        clock: seconds since the epoch (injectable so tests control time).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[int, BoardItem] = {}
        self._posts: dict[str, deque[float]] = {}

    def post(self, text: Any, author: Any, peer_id: Any) -> BoardItem:
        """Add a local post.

        Raises:
            BoardError: a field is missing or not a string, the text is over
                4096 bytes, or the author posted 10 times in the last minute.
        """
        for name, value in (("text", text), ("from", author), ("peer_id", peer_id)):
            if not isinstance(value, str):
                raise BoardError(f"{name} must be a string")
        if not text:
            raise BoardError("text must not be empty")
        size = len(text.encode())
        if size > MAX_TEXT_BYTES:
            raise BoardError(f"text is {size} bytes, over the {MAX_TEXT_BYTES}-byte limit")
        now = self._clock()
        recent = self._posts.setdefault(author, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= POSTS_PER_MINUTE:
            raise BoardError(
                f"rate limit: {author!r} already posted {POSTS_PER_MINUTE} times in the last minute"
            )
        recent.append(now)
        item = BoardItem(
            id=secrets.randbits(63), author=author, peer_id=peer_id, timestamp=int(now), text=text
        )
        self.add(item)
        return item

    def add(self, item: BoardItem) -> bool:
        """Take an item gossiped from a peer; False if already known."""
        if item.id in self._items:
            return False
        self._items[item.id] = item
        self._prune()
        return True

    def feed(
        self, *, since: int = 0, author: str | None = None, limit: int | None = None
    ) -> list[BoardItem]:
        """Items newer than `since`, optionally by one author, newest first."""
        items = [
            item
            for item in self._live()
            if item.timestamp > since and (author is None or item.author == author)
        ]
        return items[: _limit(limit)]

    def search(self, query: str, *, since: int = 0, limit: int | None = None) -> list[BoardItem]:
        """Items whose text contains `query` (case-insensitive), newest first."""
        needle = query.lower()
        items = [
            item for item in self._live() if item.timestamp > since and needle in item.text.lower()
        ]
        return items[: _limit(limit)]

    def _live(self) -> list[BoardItem]:
        self._prune()
        return sorted(
            self._items.values(), key=lambda item: (item.timestamp, item.id), reverse=True
        )

    def _prune(self) -> None:
        cutoff = self._clock() - TTL_SECONDS
        for key in [key for key, item in self._items.items() if item.timestamp < cutoff]:
            del self._items[key]
        if len(self._items) > MAX_ITEMS:
            newest = sorted(self._items.values(), key=lambda item: (item.timestamp, item.id))
            for item in newest[: len(self._items) - MAX_ITEMS]:
                del self._items[item.id]


def _limit(limit: int | None) -> int:
    if limit is None:
        return _DEFAULT_LIMIT
    if limit < 0:
        raise BoardError("limit must not be negative")
    return min(limit, MAX_ITEMS)
