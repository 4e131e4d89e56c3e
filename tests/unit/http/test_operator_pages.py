"""The operator routes: who may call them, what a bad query gets, how earnings are bucketed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mesh_x402.config import load_config
from mesh_x402.http.operator_pages import (
    ROUTES,
    OperatorApp,
    OperatorPages,
    _bucketed,
    _without_secrets,
    is_trusted_local,
)
from mesh_x402.http.server import Receive, Scope, Send


def _scope(path: str, client: tuple[str, int] | None, **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "client": client,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


@pytest.mark.parametrize(
    ("client", "headers", "trusted"),
    [
        (None, {}, True),  # the binding's Unix socket: the host checked already
        (("127.0.0.1", 5000), {"host": "127.0.0.1:8402"}, True),
        (("::1", 5000), {"host": "[::1]:8402", "origin": "http://localhost:3131"}, True),
        (("127.0.0.1", 5000), {"host": "localhost"}, True),
        (("10.0.0.7", 5000), {"host": "127.0.0.1:8402"}, False),
        (("127.0.0.1", 5000), {"host": "evil.example:8402"}, False),  # DNS rebinding
        (("127.0.0.1", 5000), {"origin": "http://evil.example"}, False),
        (("127.0.0.1", 5000), {"origin": "null"}, False),
    ],
)
def test_trusted_local_rule(
    client: tuple[str, int] | None, headers: dict[str, str], trusted: bool
) -> None:
    """mesh-llm's rule: loopback peer, and Host/Origin (when present) naming loopback."""
    assert is_trusted_local(_scope("/x402/node", client, **headers)) is trusted


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[OperatorApp]:
    config = tmp_path / "node.toml"
    config.write_text('[chain]\nrpc = "http://127.0.0.1:9/key-abc"\n', encoding="utf-8")
    pages = OperatorPages(load_config(config), "0x" + "11" * 20, lambda: None)

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    operator = OperatorApp(pages, inner)
    yield operator
    await operator.aclose()


async def _call(app: OperatorApp, scope: dict[str, Any]) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body else None


async def test_remote_caller_on_the_gateway_gets_403(app: OperatorApp) -> None:
    for route in ROUTES:
        status, body = await _call(app, _scope(route, ("192.0.2.1", 4000)))
        assert status == 403
        assert body["error"]["type"] == "forbidden"


async def test_routes_answer_locally_without_a_chain(app: OperatorApp) -> None:
    """No chain, no payments: 200s whose fields say so, never a 500."""
    status, node = await _call(app, _scope("/api/plugins/x402/http/x402/node", None))
    assert status == 200
    assert node["chain"]["connected"] is False
    status, balances = await _call(app, _scope("/x402/balances", ("127.0.0.1", 1)))
    assert (status, balances["credited"], balances["pendingSettlement"]) == (200, None, "0")
    status, receipts = await _call(app, _scope("/x402/receipts", None))
    assert (status, receipts["receipts"], receipts["total"]) == (200, [], 0)
    status, earnings = await _call(app, _scope("/x402/earnings", None))
    assert (status, earnings["series"], earnings["total"]) == (200, [], "0")


async def test_other_paths_and_bad_queries(app: OperatorApp) -> None:
    status, _ = await _call(app, _scope("/v1/models", None))
    assert status == 418  # not ours: the inner app answers
    scope = _scope("/x402/receipts", None)
    for query in (b"limit=abc", b"limit=0", b"limit=100000"):
        scope["query_string"] = query
        status, body = await _call(app, scope)
        assert status == 400
        assert "limit" in body["error"]["message"]
    scope = _scope("/x402/node", None)
    scope["method"] = "POST"
    assert (await _call(app, scope))[0] == 405


def test_earnings_buckets_sum_and_run_to_now() -> None:
    """Equal buckets from before the first earning to now; the running total is the sum."""
    now = 10_000.0
    result = _bucketed([(9_930.0, 5), (9_990.0, 7), (9_995.0, 1)], now)
    assert result["bucketSeconds"] == 60
    series = result["series"]
    assert len(series) == 12
    assert series[-1]["start"] <= now < series[-1]["start"] + 60
    assert sum(int(p["earned"]) for p in series) == 13
    assert series[-1]["cumulative"] == result["total"] == "13"
    assert [p["count"] for p in series[-3:]] == [0, 1, 2]
    wide = _bucketed([(0.0, 1)], 86_400.0 * 3)
    assert wide["bucketSeconds"] == 6 * 3600
    assert len(wide["series"]) <= 48


def test_rpc_secrets_are_cut_from_errors() -> None:
    rpc = "https://rpc.example:8443/v3/SECRETKEY?x=1"
    text = _without_secrets(f"rpc {rpc} does not answer", rpc)
    assert "SECRETKEY" not in text
    assert "https://rpc.example:8443" in text
