"""The balance cache: the hot path reads it, the chain is read behind it."""

from __future__ import annotations

import asyncio

from mesh_x402.errors import RpcUnavailable
from mesh_x402.http.balances import BalanceCache
from mesh_x402.log import Event
from structlog.testing import capture_logs

PAYER = "0x" + "Ab" * 20


class FakeChain:
    """Balances by address; counts reads; can be made to fail or to wait."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {PAYER.lower(): 500}
        self.reads = 0
        self.fail = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, payer: str) -> int:
        self.reads += 1
        await self.gate.wait()
        if self.fail:
            raise RpcUnavailable("no node")
        return self.balances[payer.lower()]


class TestBalanceCache:
    async def test_unknown_until_refreshed_then_cached(self) -> None:
        """A new payer has no cached balance; one refresh reads it, later reads are free."""
        chain = FakeChain()
        now = [0.0]
        cache = BalanceCache(chain.fetch, ttl=5.0, clock=lambda: now[0])
        assert cache.cached_balance(PAYER) is None
        assert await cache.refresh(PAYER) == 500
        assert cache.cached_balance(PAYER.upper().replace("0X", "0x")) == 500
        assert chain.reads == 1

    async def test_stale_entry_served_while_refreshing(self) -> None:
        """An old balance is still answered at once; the new one arrives in the background."""
        chain = FakeChain()
        now = [0.0]
        cache = BalanceCache(chain.fetch, ttl=5.0, clock=lambda: now[0])
        await cache.refresh(PAYER)
        chain.balances[PAYER.lower()] = 7
        now[0] = 10.0
        chain.gate.clear()
        assert cache.cached_balance(PAYER) == 500  # stale, refresh started
        assert cache.cached_balance(PAYER) == 500  # no second refresh while one runs
        chain.gate.set()
        for _ in range(100):
            await asyncio.sleep(0)
            if cache.cached_balance(PAYER) == 7:
                break
        assert cache.cached_balance(PAYER) == 7
        assert chain.reads == 2

    async def test_concurrent_refreshes_share_one_read(self) -> None:
        """Many first payments of one payer cost one chain read."""
        chain = FakeChain()
        cache = BalanceCache(chain.fetch)
        chain.gate.clear()
        waiting = [asyncio.ensure_future(cache.refresh(PAYER)) for _ in range(10)]
        await asyncio.sleep(0)
        chain.gate.set()
        assert await asyncio.gather(*waiting) == [500] * 10
        assert chain.reads == 1

    async def test_chain_failure_keeps_last_value_and_logs(self) -> None:
        """An unreachable chain never raises into a request: the last value stands."""
        chain = FakeChain()
        now = [0.0]
        cache = BalanceCache(chain.fetch, ttl=1.0, clock=lambda: now[0])
        chain.fail = True
        with capture_logs() as logs:
            assert await cache.refresh(PAYER) is None
        assert [entry["event"] for entry in logs] == [Event.BALANCE_REFRESH_FAILED]
        chain.fail = False
        await cache.refresh(PAYER)
        chain.fail = True
        now[0] = 5.0
        assert await cache.refresh(PAYER) == 500
