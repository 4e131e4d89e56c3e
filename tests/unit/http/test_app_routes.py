"""The gate app's routing: one app for the binding path and the gateway."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mesh_x402.config import NodeConfig, SettlementConfig
from mesh_x402.core.ports import Settlement, TokenDomain
from mesh_x402.errors import ConfigError
from mesh_x402.http.app import GateApp, GateContext, build_app, strip_binding_prefix
from mesh_x402.http.upstream import UpstreamClient
from mesh_x402.store.journal import Journal

TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


class NoBalances:
    def cached_balance(self, payer: str) -> int | None:
        return None


def _context(tmp_path: Path, **config: object) -> GateContext:
    return GateContext(
        config=NodeConfig(path=tmp_path / "node.toml", **config),  # type: ignore[arg-type]
        journal=Journal.in_state_dir(tmp_path / "state"),
        token=TOKEN,
        pay_to="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        balances=NoBalances(),
        upstream=UpstreamClient("http://127.0.0.1:9", timeout=1.0),
    )


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GateApp]:
    gate = build_app(_context(tmp_path))
    yield gate
    await gate.aclose()


async def _request(app: GateApp, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


class TestRoutes:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/api/plugins/x402/http/v1/chat/completions", "/v1/chat/completions"),
            ("/api/plugins/other-name/http/v1/models", "/v1/models"),
            ("/v1/completions", "/v1/completions"),
            ("/api/plugins/x402/httpx/v1/models", "/api/plugins/x402/httpx/v1/models"),
            ("/api/plugins/x402/http", "/api/plugins/x402/http"),
        ],
    )
    def test_binding_prefix(self, path: str, expected: str) -> None:
        """The management path's prefix is removed; nothing else is rewritten."""
        assert strip_binding_prefix(path) == expected

    async def test_402_under_the_binding_path(self, app: GateApp) -> None:
        """A paid route asked through the binding path is quoted like the gateway's."""
        body = {"model": "m", "max_tokens": 5}
        direct = await _request(app, "POST", "/v1/chat/completions", json=body)
        bound = await _request(app, "POST", "/api/plugins/x402/http/v1/chat/completions", json=body)
        assert direct.status_code == bound.status_code == 402
        assert (
            direct.json()["accepts"][0]["maxAmountRequired"]
            == (bound.json()["accepts"][0]["maxAmountRequired"])
        )

    async def test_wrong_method_and_unknown_path(self, app: GateApp) -> None:
        """GET on a paid route is 405 naming POST; an unknown path is 404."""
        wrong = await _request(app, "GET", "/v1/chat/completions")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "POST"
        assert (await _request(app, "POST", "/v1/models")).status_code == 405
        assert (await _request(app, "GET", "/v1/embeddings")).status_code == 404
        assert (await _request(app, "DELETE", "/nothing")).status_code == 404

    async def test_deeply_nested_body_is_400(self, app: GateApp) -> None:
        """`[[[[...` 300,000 deep is refused as not JSON. Unbounded, CPython's decoder
        would overflow the C stack once web3 has raised the recursion limit, as it
        does in the plugin process: a SIGKILL-like crash instead of an answer."""
        import web3  # noqa: F401 - raises the recursion limit, as in the plugin process

        response = await _request(
            app,
            "POST",
            "/v1/chat/completions",
            content=b"[" * 300_000,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"

    async def test_models_without_upstream_is_502(self, app: GateApp) -> None:
        """No mesh-llm to ask: the model list is a clear upstream error."""
        response = await _request(app, "GET", "/v1/models")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"

    async def test_unknown_payer_balance_is_refused(self, app: GateApp) -> None:
        """With no balance known and no way to read one, a payment is refused, not trusted."""
        from eth_account import Account
        from mesh_x402.core.payer import encode_header, sign_payment
        from mesh_x402.core.requirements import build_requirements

        body = {"model": "m", "max_tokens": 5}
        quoted = await _request(app, "POST", "/v1/chat/completions", json=body)
        amount = int(quoted.json()["accepts"][0]["maxAmountRequired"])
        requirements = build_requirements(
            TOKEN, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", amount
        )
        import time

        payload = sign_payment(
            Account.from_key("0x" + "11" * 32), requirements, TOKEN, now=int(time.time())
        )
        response = await _request(
            app,
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"PAYMENT-SIGNATURE": encode_header(payload)},
        )
        assert response.status_code == 402
        assert response.json()["error"] == "invalid_exact_evm_insufficient_balance"


class TestBuild:
    def test_immediate_settlement_without_a_settler_is_refused(self, tmp_path: Path) -> None:
        """Mode immediate with nothing to settle with: a clear config error, not a
        silent deferral."""
        ctx = _context(tmp_path, settlement=SettlementConfig(mode="immediate"))
        with pytest.raises(ConfigError, match="'immediate' needs"):
            build_app(ctx)
        ctx.journal.close()

    def test_settler_in_deferred_mode_is_refused(self, tmp_path: Path) -> None:
        """A settler the config says not to use is a wiring mistake, named."""

        class Unused:
            async def settle_now(self, payment_id: str) -> Settlement:
                raise AssertionError("never called")

        ctx = dataclasses.replace(_context(tmp_path), settler=Unused())
        with pytest.raises(ConfigError, match="'deferred'"):
            build_app(ctx)
        ctx.journal.close()
