"""The load generator: paid and free requests against one server, timed (a benchmark helper).

Every function takes the payment headers ready-made (signed beforehand, one
fresh nonce each), so signing is not in any timed figure. Requests go
through one pooled httpx client with keep-alive, the same for every server.
Windows are `time.monotonic()` pairs, the clock the RPC proxy stamps calls
with, so chain calls can be matched to the requests they fall in.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

PAID_PATH = "/v1/chat/completions"
FREE_PATH = "/v1/models"
_JSON = {"content-type": "application/json"}


class BenchError(RuntimeError):
    """A request the benchmark expected to succeed did not."""


def client() -> httpx.AsyncClient:
    """The load generator's client: pooled, keep-alive, no proxies from the environment.

    An idle connection is dropped after 2 s, well before the servers' own 5 s
    keep-alive timeout (uvicorn's): at httpx's default of 5 s, a request sent
    on a connection idle for just under 5 s (the 16 throughput connections
    wait out the stream phase, about 4.5 s) could meet the server closing it,
    and fail with a ReadError that says nothing about the server under test.
    """
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
    return httpx.AsyncClient(timeout=120, limits=limits, trust_env=False)


def _headers(payment: str | None) -> dict[str, str]:
    return _JSON if payment is None else {**_JSON, "payment-signature": payment}


async def paid(http: httpx.AsyncClient, url: str, body: bytes, payment: str | None) -> None:
    """One whole non-streamed request; a non-2xx answer is an error."""
    response = await http.post(url + PAID_PATH, content=body, headers=_headers(payment))
    if response.status_code != 200:
        raise BenchError(f"{url}{PAID_PATH} answered {response.status_code}: {response.text[:300]}")


@dataclass
class Sequential:
    latencies: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)


async def sequential(
    http: httpx.AsyncClient, url: str, body: bytes, payments: Sequence[str | None]
) -> Sequential:
    """One request after another; the latency and window of each."""
    result = Sequential()
    for payment in payments:
        start = time.monotonic()
        await paid(http, url, body, payment)
        end = time.monotonic()
        result.latencies.append(end - start)
        result.windows.append((start, end))
    return result


async def throughput(
    http: httpx.AsyncClient, url: str, body: bytes, payments: Sequence[str | None], workers: int
) -> float:
    """Requests per second with `workers` clients sending all `payments` between them."""
    queue = list(reversed(payments))

    async def worker() -> None:
        while queue:
            await paid(http, url, body, queue.pop())

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return len(payments) / (time.monotonic() - start)


async def streamed(
    http: httpx.AsyncClient, url: str, body: bytes, payment: str | None
) -> tuple[float, float]:
    """(time to the first body byte, time to the end) of one streamed request."""
    start = time.monotonic()
    first = None
    async with http.stream("POST", url + PAID_PATH, content=body, headers=_headers(payment)) as r:
        if r.status_code != 200:
            raise BenchError(f"{url}{PAID_PATH} stream answered {r.status_code}")
        async for chunk in r.aiter_raw():
            if first is None and chunk:
                first = time.monotonic() - start
    return float(first or 0.0), time.monotonic() - start


async def free(http: httpx.AsyncClient, url: str) -> float:
    """Latency of one request on the free route."""
    start = time.monotonic()
    response = await http.get(url + FREE_PATH)
    if response.status_code != 200:
        raise BenchError(f"{url}{FREE_PATH} answered {response.status_code}")
    return time.monotonic() - start


async def free_under_load(
    http: httpx.AsyncClient,
    *,
    url: str,
    body: bytes,
    payments: Sequence[str | None],
    workers: int,
    probes: int,
) -> float:
    """Median free-route latency while `workers` clients pay (from the `payments` pool).

    The payers start first; probing stops after `probes` requests, then the
    payers stop after their request in flight.
    """
    queue = list(reversed(payments))
    stop = asyncio.Event()
    started = asyncio.Event()

    async def worker() -> None:
        started.set()
        while queue and not stop.is_set():
            await paid(http, url, body, queue.pop())

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    await started.wait()
    await asyncio.sleep(0.05)  # let every payer have a request in flight
    samples = []
    try:
        for _ in range(probes):
            if not queue:
                raise BenchError(
                    f"{url}: the pool of {len(payments)} payments ran out while probing"
                )
            samples.append(await free(http, url))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return statistics.median(samples)
