"""Payer balances, cached and refreshed in the background.

Checking a payment must not wait on the chain (about 0.1 ms of signature
work versus a JSON-RPC round trip), so the gate reads balances from this
cache. A stale entry is still served and a refresh is started behind it; a
payer never seen before is read once, inline, because there is nothing to
serve yet. Between refreshes the journal's unsettled exposure is what keeps
a payer from spending the same balance twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from mesh_x402.core.ports import BalanceRefresher
from mesh_x402.errors import PluginError
from mesh_x402.log import Event, get_logger

__all__ = ["BalanceCache"]

_log = get_logger("http")


class BalanceCache(BalanceRefresher):
    """Token balances by payer address, refreshed when older than `ttl`.

    Args:
        fetch: reads one payer's balance from the chain (run a synchronous
            client through `asyncio.to_thread`, never on the event loop).
        ttl: seconds after which a cached balance is refreshed in the background.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[int]],
        *,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}
        self._inflight: dict[str, asyncio.Task[int | None]] = {}

    def cached_balance(self, payer: str) -> int | None:
        """The last balance read, starting a background refresh when it is stale."""
        key = payer.lower()
        entry = self._entries.get(key)
        if entry is None:
            return None
        balance, read_at = entry
        if self._clock() - read_at >= self._ttl and key not in self._inflight:
            self._start(key)
        return balance

    def _start(self, key: str) -> asyncio.Task[int | None]:
        task = asyncio.get_running_loop().create_task(self._read(key))
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return task

    async def _read(self, key: str) -> int | None:
        try:
            balance = await self._fetch(key)
        except (PluginError, OSError) as exc:
            _log.warning(Event.BALANCE_REFRESH_FAILED, payer=key, error=str(exc))
            return None
        self._entries[key] = (balance, self._clock())
        return balance

    async def refresh(self, payer: str) -> int | None:
        """Read the payer's balance now (joining a refresh already running)."""
        key = payer.lower()
        task = self._inflight.get(key) or self._start(key)
        result = await asyncio.shield(task)
        if result is None:
            entry = self._entries.get(key)
            return None if entry is None else entry[0]
        return result
