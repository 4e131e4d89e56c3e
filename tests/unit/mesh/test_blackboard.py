"""Blackboard posts: one line per settled batch, never blocking, rate limited, silent when absent.

The board is a small real HTTP server on 127.0.0.1 that records what it is
sent (or answers 404, as a node without a blackboard does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from mesh_x402.chain.reconciler import BatchReport
from mesh_x402.log import Event
from mesh_x402.mesh.blackboard import POST_PATH, BlackboardPoster, batch_line
from structlog.testing import capture_logs


class Board:
    """Answers every request with `status`, keeping (path, JSON body) of each."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(
            int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")
        )
        body = await reader.readexactly(length)
        self.posts.append((lines[0].split()[1], json.loads(body)))
        self.arrived.set()
        head = f"HTTP/1.1 {self.status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        writer.write(head.encode() + b"{}")
        await writer.drain()
        writer.close()


@pytest.fixture
async def board() -> AsyncIterator[Board]:
    fake = Board()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield fake
    server.close()
    await server.wait_closed()


def batch(n: int = 1, settled: int = 3, total: int = 4500) -> BatchReport:
    return BatchReport(n, f"0x{n:064x}", "confirmed", settled, 0, total, 10)


def poster(url: str, *, private: bool = True, now: list[float] | None = None) -> BlackboardPoster:
    clock = now if now is not None else [0.0]
    return BlackboardPoster(
        url, private=lambda: private, peer_id=lambda: "ab" * 32, clock=lambda: clock[0]
    )


async def test_a_settled_batch_becomes_one_line(board: Board) -> None:
    """The post goes to the blackboard route with text, author and peer id."""
    sender = poster(board.url)
    sender.on_batch(batch())
    await sender.aclose()
    ((path, body),) = board.posts
    assert path == POST_PATH
    assert body == {"text": batch_line(batch()), "from": "x402", "peer_id": "ab" * 32}
    assert (
        body["text"] == f"x402: settled 3 payments, total 4500 (token atomic units), tx 0x{1:064x}"
    )


async def test_posting_does_not_wait_for_the_board(board: Board) -> None:
    """on_batch returns before the post is even sent (it is a task of its own)."""
    sender = poster(board.url)
    sender.on_batch(batch())
    assert board.posts == []
    await board.arrived.wait()
    await sender.aclose()


async def test_at_most_ten_posts_a_minute(board: Board) -> None:
    """The 11th batch within 60 s is not posted; after the minute, posting resumes."""
    now = [100.0]
    sender = poster(board.url, now=now)
    for n in range(11):
        sender.on_batch(batch(n))
    now[0] = 160.0
    sender.on_batch(batch(99))
    await sender.aclose()
    assert len(board.posts) == 11
    assert batch_line(batch(10)) not in {body["text"] for _, body in board.posts}


async def test_public_mesh_posts_nothing(board: Board) -> None:
    """On a public mesh there is no blackboard: nothing is sent."""
    sender = poster(board.url, private=False)
    with capture_logs() as logs:
        sender.on_batch(batch())
        sender.on_batch(batch(2))
    await sender.aclose()
    assert board.posts == []
    assert [entry["event"] for entry in logs] == [Event.BLACKBOARD_SKIPPED]


async def test_no_blackboard_is_one_debug_line(board: Board) -> None:
    """A node without a blackboard (404) is skipped with a single debug log."""
    board.status = 404
    sender = poster(board.url)
    with capture_logs() as logs:
        sender.on_batch(batch(1))
        await sender.aclose()
        sender = poster(board.url)
        sender.on_batch(batch(2))
        sender.on_batch(batch(3))
        await sender.aclose()
    skipped = [e for e in logs if e["event"] == Event.BLACKBOARD_SKIPPED]
    assert len(skipped) == 2  # one per poster, not one per post
    assert all(e["log_level"] == "debug" for e in skipped)


async def test_nothing_listening_is_skipped_quietly() -> None:
    """Connection refused (no management API at all) is the same silent skip."""
    sender = poster("http://127.0.0.1:9")
    with capture_logs() as logs:
        sender.on_batch(batch())
        await sender.aclose()
    assert [(e["event"], e["log_level"]) for e in logs] == [(Event.BLACKBOARD_SKIPPED, "debug")]
