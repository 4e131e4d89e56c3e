"""Settled batches as one-line posts on the mesh's blackboard, best effort.

The blackboard is another plugin (built into 0.66, `Mesh-LLM/blackboard` on
0.76) that a plugin reaches only over HTTP on the node's management port:
`POST /api/plugins/blackboard/http/post` with `{"text", "from", "peer_id"}`.
It exists on private meshes only, allows 10 posts a minute per author, and
a node may have none at all. So a post here never blocks settlement: it is
a task of its own with a short timeout, posts beyond 10 a minute are
dropped, and a node without a blackboard (or on a public mesh) is skipped
with a single debug line.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import httpx

from mesh_x402.chain.reconciler import BatchReport
from mesh_x402.log import Event, get_logger

__all__ = ["POSTS_PER_MINUTE", "POST_PATH", "BlackboardPoster", "batch_line"]

POST_PATH: Final = "/api/plugins/blackboard/http/post"
POSTS_PER_MINUTE: Final = 10
_WINDOW: Final = 60.0

_log = get_logger("mesh")


def batch_line(batch: BatchReport) -> str:
    """The human-readable line for one settled batch."""
    noun = "payment" if batch.settled == 1 else "payments"
    return (
        f"x402: settled {batch.settled} {noun}, total {batch.total} "
        f"(token atomic units), tx {batch.tx_hash}"
    )


class BlackboardPoster:
    """Posts settled batches to the local node's blackboard without ever waiting for it.

    Args:
        management_url: the node's management API, e.g. `http://127.0.0.1:3131`.
        private: whether the mesh is private (the blackboard exists only there).
        peer_id: this node's mesh-llm peer id, if known yet.
        author: the post's `from`.
        timeout: seconds one post may take.
        clock: monotonic seconds, for the rate limit.
    """

    def __init__(
        self,
        management_url: str,
        *,
        private: Callable[[], bool],
        peer_id: Callable[[], str | None],
        author: str = "x402",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = management_url.rstrip("/") + POST_PATH
        self._private = private
        self._peer_id = peer_id
        self._author = author
        self._client = httpx.AsyncClient(timeout=timeout)
        self._clock = clock
        self._sent: deque[float] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._absent_logged = False

    def on_batch(self, batch: BatchReport) -> None:
        """Post about a settled batch in the background (the reconciler's callback)."""
        if not self._private():
            self._absent("public mesh")
            return
        now = self._clock()
        while self._sent and now - self._sent[0] >= _WINDOW:
            self._sent.popleft()
        if len(self._sent) >= POSTS_PER_MINUTE:
            _log.debug(Event.BLACKBOARD_SKIPPED, reason="rate limit", tx=batch.tx_hash)
            return
        self._sent.append(now)
        task = asyncio.get_running_loop().create_task(self._post(batch_line(batch)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, text: str) -> None:
        body = {"text": text, "from": self._author, "peer_id": self._peer_id() or ""}
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            self._absent(f"{type(exc).__name__}")
            return
        if response.status_code in (404, 403, 405):
            self._absent(f"HTTP {response.status_code}")
            return
        if response.is_success:
            _log.info(Event.BLACKBOARD_POSTED, text=text)
        else:
            _log.debug(Event.BLACKBOARD_SKIPPED, reason=f"HTTP {response.status_code}")

    def _absent(self, reason: str) -> None:
        if not self._absent_logged:
            self._absent_logged = True
            _log.debug(Event.BLACKBOARD_SKIPPED, reason=f"no blackboard: {reason}")

    async def aclose(self) -> None:
        """Wait briefly for posts in flight (each has its own timeout), then close."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._client.aclose()
