"""What UpstreamClient adds on top of a bare pooled httpx client (not a test).

Runs the fake mesh-llm API in-process and times, in the same run and
interleaved so machine noise hits both sides alike:
- JSON: a whole non-streamed chat completion;
- SSE: the time to the first body bytes of a streamed one;
- SSE: the whole streamed answer (the tap's per-event cost).
Prints the medians and the ratio through/direct.

    .venv/bin/python bench/upstream_overhead.py [--rounds 300] [--chunks 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.http.upstream import UpstreamClient

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello " * 50}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
PATH = "/v1/chat/completions"


async def direct_json(client: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    response = await client.post(PATH, json=BODY)
    response.json()
    return time.perf_counter() - start


async def through_json(client: UpstreamClient) -> float:
    start = time.perf_counter()
    async with await client.forward("POST", PATH, BODY, {}, "bench") as response:
        await response.read()
    return time.perf_counter() - start


async def direct_first_byte(client: httpx.AsyncClient, *, whole: bool) -> float:
    start = time.perf_counter()
    async with client.stream("POST", PATH, json=STREAM_BODY) as response:
        elapsed = None
        async for _ in response.aiter_bytes():
            if elapsed is None:
                elapsed = time.perf_counter() - start
                if not whole:
                    break
    return time.perf_counter() - start if whole else float(elapsed or 0.0)


async def through_first_byte(client: UpstreamClient, *, whole: bool) -> float:
    start = time.perf_counter()
    async with await client.forward("POST", PATH, STREAM_BODY, {}, "bench") as response:
        elapsed = None
        async for _ in response.body():
            if elapsed is None:
                elapsed = time.perf_counter() - start
                if not whole:
                    break
    return time.perf_counter() - start if whole else float(elapsed or 0.0)


async def compare(
    name: str,
    rounds: int,
    direct: Callable[[], Awaitable[float]],
    through: Callable[[], Awaitable[float]],
) -> None:
    for _ in range(10):  # warm the pools and the fake
        await direct()
        await through()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(await direct())
        b.append(await through())
    da, db = statistics.median(a), statistics.median(b)
    print(
        f"{name:<16} direct {da * 1000:7.3f} ms   through {db * 1000:7.3f} ms   "
        f"ratio {db / da:5.2f}   (+{(db - da) * 1000:.3f} ms)"
    )


async def main(rounds: int, chunks: int) -> None:
    with FakeUpstream([FakeModel("bench", completion_tokens=chunks, chunks=chunks)]) as fake:
        direct = httpx.AsyncClient(base_url=fake.url, trust_env=False)
        through = UpstreamClient(fake.url, timeout=30.0)
        try:
            print(f"{rounds} rounds, {chunks} SSE chunks per answer, median latency")
            await compare(
                "json", rounds, lambda: direct_json(direct), lambda: through_json(through)
            )
            await compare(
                "sse first byte",
                rounds,
                lambda: direct_first_byte(direct, whole=False),
                lambda: through_first_byte(through, whole=False),
            )
            await compare(
                "sse whole",
                rounds,
                lambda: direct_first_byte(direct, whole=True),
                lambda: through_first_byte(through, whole=True),
            )
        finally:
            await direct.aclose()
            await through.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.chunks))
