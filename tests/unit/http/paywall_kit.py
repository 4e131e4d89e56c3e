"""The gate's app on a real journal in front of the fake upstream, for the paywall tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from eth_account import Account
from mesh_x402.config import NodeConfig, UpstreamConfig
from mesh_x402.core.ports import ReceiptIssuer, TokenDomain
from mesh_x402.devnet.fake_upstream import FakeUpstream
from mesh_x402.http.app import GateApp, GateContext, build_app
from mesh_x402.http.server import Message
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.store.journal import Journal

TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PAY_TO = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = Account.from_key("0x" + "11" * 32)


class RichPayers:
    """Every payer holds plenty: the balance check never refuses."""

    def cached_balance(self, payer: str) -> int | None:
        return 10**12


def paywall_app(
    tmp_path: Path,
    journal: Journal,
    upstream: FakeUpstream,
    receipts: ReceiptIssuer | None = None,
) -> GateApp:
    """The gate's app for `journal` and `upstream` (and a receipt issuer, if given)."""
    return build_app(
        GateContext(
            config=NodeConfig(
                path=tmp_path / "node.toml", upstream=UpstreamConfig(url=upstream.url)
            ),
            journal=journal,
            token=TOKEN,
            pay_to=PAY_TO,
            balances=RichPayers(),
            upstream=UpstreamClient(upstream.url, timeout=10.0),
            receipts=receipts,
        )
    )


async def call_app(
    app: GateApp, body: dict[str, object], headers: dict[str, str], sent: list[Message]
) -> None:
    """One request straight through the ASGI app, recording in `sent` every message
    the app sent (also when the app raises)."""
    content = json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "scheme": "http",
        "headers": [
            (b"host", b"node"),
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in headers.items()),
        ],
    }
    inbound = [{"type": "http.request", "body": content, "more_body": False}]
    done = asyncio.Event()

    async def receive() -> Message:
        if inbound:
            return inbound.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    finally:
        done.set()
