"""A counting JSON-RPC proxy on 127.0.0.1 in front of anvil (a benchmark helper).

Every server under test talks to the chain through this proxy, so the
benchmark can say how many JSON-RPC calls a paid request costs and whether
any of them sits on the request path. It forwards each HTTP POST body to
the real node unchanged and counts the calls in it (a JSON-RPC batch counts
once per entry), by method, with the arrival time of each on the system's
monotonic clock (CLOCK_MONOTONIC is shared by every process on the machine,
so the load generator can match arrivals against its own request windows).

    python bench/rpc_proxy.py --upstream http://127.0.0.1:8545

prints `READY http://127.0.0.1:PORT` once it listens, then serves until
stdin closes. `GET /stats?since=N` answers the total, the counts by method
and the arrivals from the N-th call on. `POST /delay` with a number of
seconds as the body makes every later call wait that long before it is
forwarded (0 ends it): a request that waits on the chain then shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
from procs import serve_until_stdin_closes


class CountingProxy:
    """ASGI app: POST forwards and counts, GET /stats reports."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._client: httpx.AsyncClient | None = None
        self.methods: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str]] = []
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            await self._stats(scope, send)
            return
        if scope["path"] == "/delay":
            self.delay = float(body.decode() or 0)
            await _send(send, 200, b"{}")
            return
        now = time.monotonic()
        self._count(bytes(body), now)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120, trust_env=False)
        reply = await self._client.post(
            self._upstream, content=bytes(body), headers={"content-type": "application/json"}
        )
        await _send(send, reply.status_code, reply.content)

    def _count(self, body: bytes, now: float) -> None:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        calls = document if isinstance(document, list) else [document]
        for call in calls:
            method = call.get("method", "?") if isinstance(call, dict) else "?"
            self.methods[method] += 1
            self.arrivals.append((now, method))

    async def _stats(self, scope: dict[str, Any], send: Any) -> None:
        since = 0
        for part in scope.get("query_string", b"").decode().split("&"):
            if part.startswith("since="):
                since = int(part[6:])
        document = {
            "total": len(self.arrivals),
            "methods": dict(self.methods),
            "arrivals": self.arrivals[since:],
        }
        await _send(send, 200, json.dumps(document).encode())


async def _send(send: Any, status: int, content: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the node's JSON-RPC URL")
    asyncio.run(serve_until_stdin_closes(CountingProxy(parser.parse_args().upstream)))


if __name__ == "__main__":
    main()
