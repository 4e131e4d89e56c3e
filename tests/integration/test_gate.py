"""The x402 gate end to end: real anvil chain and contracts, real HTTP, real SQLite.

The gate app runs under uvicorn on 127.0.0.1 (the same `HttpServer` that
`serve` uses) in front of the fake mesh-llm API; payers are funded with the
deployed TestUSDC, whose EIP-712 domain and balances the gate reads from
the chain. The official x402 SDK client pays through it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mesh_x402.chain.anvil import Anvil, dev_account
from mesh_x402.chain.bindings import TokenBinding
from mesh_x402.chain.client import ChainClient
from mesh_x402.chain.deployment import Deployment, deploy
from mesh_x402.config import (
    ChainConfig,
    GatewayConfig,
    NodeConfig,
    Price,
    PricingConfig,
    UpstreamConfig,
)
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.pricing import Quote, charge_for_usage, quote_request
from mesh_x402.devnet.fake_upstream import FakeModel, FakeUpstream
from mesh_x402.errors import ConfigError
from mesh_x402.http.app import GateApp
from mesh_x402.http.gate import open_gate
from mesh_x402.http.server import HttpServer, bind_tcp
from mesh_x402.store.journal import Journal, NewPayment, PaymentState
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequirements
from x402.schemas.v1 import PaymentRequiredV1

pytestmark = pytest.mark.integration

PRICING = PricingConfig(
    default=Price(base=1000, prompt_per_1k=500, completion_per_1k=2000),
    models={
        "fake-model": Price(base=2000, prompt_per_1k=1000, completion_per_1k=4000),
        "held": Price(base=10, prompt_per_1k=10, completion_per_1k=10),
        "slow-start": Price(base=10, prompt_per_1k=10, completion_per_1k=10),
    },
    unknown_models="refuse",
    max_completion_tokens=64,
)
MODELS = (
    FakeModel("fake-model", completion_tokens=24, chunks=6),
    FakeModel("held", completion_tokens=24, chunks=6, hold_after_chunks=2),
    FakeModel("slow-start", first_byte_delay=3.0),
    FakeModel("unpriced"),
)
FUNDS = 10**9


@dataclass
class Chain:
    url: str
    client: ChainClient
    deployment: Deployment
    token: TokenBinding
    domain: TokenDomain
    payer: LocalAccount


def _funded_chain(chain_id: int) -> Iterator[Chain]:
    with Anvil(chain_id=chain_id) as anvil:
        client = ChainClient.connect(anvil.url, chain_id=chain_id)
        deployer = dev_account(0)
        deployment = deploy(
            client, deployer, with_test_token=True, with_identity_registry=True, force=True
        )
        token = TokenBinding(client, deployment.token)
        payer = Account.from_key("0x" + "5a" * 32)
        token.mint(deployer, payer.address, FUNDS)
        domain = TokenDomain(token.name(), token.version(), client.chain_id, token.address)
        yield Chain(anvil.url, client, deployment, token, domain, payer)


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    yield from _funded_chain(31337)


@pytest.fixture(scope="module")
def base_sepolia() -> Iterator[Chain]:
    """A local chain posing as Base Sepolia (84532), the one the SDK's v1 client can name."""
    yield from _funded_chain(84532)


@pytest.fixture(scope="module")
def upstream_api() -> Iterator[FakeUpstream]:
    with FakeUpstream(MODELS) as fake:
        yield fake


@dataclass
class Gate:
    url: str
    journal: Journal
    chain: Chain
    upstream_api: FakeUpstream
    config: NodeConfig

    def quote(self, body: dict[str, Any]) -> Quote:
        raw = json.dumps(
            body, ensure_ascii=False, separators=(",", ":")
        ).encode()  # as httpx sends it
        quote = quote_request(self.config.pricing, body, len(raw))
        assert isinstance(quote, Quote)
        return quote

    def count(self, state: PaymentState) -> int:
        return self.journal.count(state)


async def _start_gate(
    tmp_path: Path, chain: Chain, upstream_url: str, fake: FakeUpstream, **gateway: Any
) -> tuple[Gate, _Uvicorn, GateApp]:
    config = NodeConfig(
        pricing=PRICING,
        gateway=GatewayConfig(**gateway),
        upstream=UpstreamConfig(url=upstream_url, timeout_seconds=10.0),
        chain=ChainConfig(
            rpc=chain.url,
            chain_id=chain.client.chain_id,
            token=chain.deployment.token,
            settlement=chain.deployment.settlement,
            identity_registry=chain.deployment.identity_registry,
        ),
        path=tmp_path / "node.toml",
    )
    app = await open_gate(config)
    server = _Uvicorn(app)
    port = await server.start()
    # A second connection to the same file: what the gate committed is visible here.
    journal = Journal.in_state_dir(config.state_path)
    return Gate(f"http://127.0.0.1:{port}", journal, chain, fake, config), server, app


class _Uvicorn:
    """The app under plain uvicorn on 127.0.0.1 (a free port).

    Not `HttpServer`: its half-close-tolerant protocol (needed for the host's
    Unix-socket relay) also keeps a TCP connection open after the client's
    FIN, so a client that leaves is only noticed at the next write.
    """

    def __init__(self, app: GateApp) -> None:
        self._socket = bind_tcp("127.0.0.1", 0)
        config = uvicorn.Config(app, http="h11", lifespan="off", log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self._task = asyncio.ensure_future(self._server.serve(sockets=[self._socket]))
        port: int = self._socket.getsockname()[1]
        return port

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()


@pytest.fixture
async def gate(tmp_path: Path, chain: Chain, upstream_api: FakeUpstream) -> AsyncIterator[Gate]:
    started, server, app = await _start_gate(
        tmp_path, chain, upstream_api.url, upstream_api, max_body_bytes=64 * 1024
    )
    yield started
    await server.stop()
    await app.aclose()
    started.journal.close()


def _sdk_client(payer: LocalAccount) -> httpx.AsyncClient:
    client = x402Client()
    register_exact_evm_client(client, payer)
    client.set_spend_controls(False)  # a local chain's token is not on the SDK's list
    return httpx.AsyncClient(transport=x402AsyncTransport(client), timeout=30)


def _decode(header: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(header))
    return decoded


def _chat(model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}


async def _requirements(gate: Gate, body: dict[str, Any]) -> PaymentRequirements:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{gate.url}/v1/chat/completions", json=body)
    assert response.status_code == 402
    required = _decode(response.headers["payment-required"])
    return PaymentRequirements.model_validate(required["accepts"][0])


async def _paid(
    gate: Gate, body: dict[str, Any], header: str, name: str = "PAYMENT-SIGNATURE"
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{gate.url}/v1/chat/completions", json=body, headers={name: header}
        )


class TestPaidRequests:
    async def test_sdk_client_pays_v2_and_is_charged_the_usage_price(self, gate: Gate) -> None:
        """The official client pays; the charge is the usage price, below the quote."""
        body = _chat(max_tokens=16)
        async with _sdk_client(gate.chain.payer) as client:
            response = await client.post(f"{gate.url}/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        settle = _decode(response.headers["payment-response"])
        quote = gate.quote(body)
        expected = charge_for_usage(quote, usage["prompt_tokens"], usage["completion_tokens"])
        assert expected < quote.amount
        assert settle["success"] is True
        assert settle["payer"] == gate.chain.payer.address
        assert settle["network"] == "eip155:31337"
        assert settle["transaction"] == ""
        assert settle["amount"] == str(expected)
        record = gate.journal.get(settle["extra"]["receiptId"])
        assert record is not None
        assert record.state is PaymentState.CHARGEABLE
        assert record.charge == expected
        assert record.value == quote.amount
        async with httpx.AsyncClient() as client:
            receipt = (await client.get(f"{gate.url}/x402/receipts/{record.receipt_id}")).json()
        assert receipt["state"] == "chargeable"
        assert receipt["charge"] == str(expected)
        assert receipt["usage"]["completion_tokens"] == usage["completion_tokens"]

    async def test_v1_payload_is_served(self, gate: Gate) -> None:
        """A v1 X-PAYMENT built from the v1 402 body is served, answered with X-PAYMENT-RESPONSE."""
        body = _chat(max_tokens=8)
        async with httpx.AsyncClient() as client:
            required = await client.post(f"{gate.url}/v1/chat/completions", json=body)
        v1 = required.json()
        assert v1["x402Version"] == 1
        entry = v1["accepts"][0]
        requirements = PaymentRequirements(
            scheme=entry["scheme"],
            network="eip155:31337",
            asset=entry["asset"],
            amount=entry["maxAmountRequired"],
            pay_to=entry["payTo"],
            max_timeout_seconds=entry["maxTimeoutSeconds"],
            extra=entry["extra"],
        )
        payload = sign_payment(
            gate.chain.payer, requirements, gate.chain.domain, now=_now(), version=1
        )
        response = await _paid(gate, body, encode_header(payload), "X-PAYMENT")
        assert response.status_code == 200, response.text
        settle = _decode(response.headers["x-payment-response"])
        assert settle["success"] is True
        assert "payment-response" not in response.headers

    async def test_sdk_v1_payload_is_served(
        self, tmp_path: Path, base_sepolia: Chain, upstream_api: FakeUpstream
    ) -> None:
        """The SDK's own v1 client signs from our v1 body (legacy network name) and is served."""
        gate, server, app = await _start_gate(
            tmp_path, base_sepolia, upstream_api.url, upstream_api
        )
        try:
            body = _chat(max_tokens=8)
            async with httpx.AsyncClient() as client:
                required = (await client.post(f"{gate.url}/v1/chat/completions", json=body)).json()
            assert required["accepts"][0]["network"] == "base-sepolia"
            sdk = x402Client()
            register_exact_evm_client(sdk, base_sepolia.payer)
            sdk.set_spend_controls(False)
            payload = await sdk.create_payment_payload(PaymentRequiredV1.model_validate(required))
            headers = x402HTTPClient(sdk).encode_payment_signature_header(payload)
            assert set(headers) == {"X-PAYMENT"}
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{gate.url}/v1/chat/completions", json=body, headers=headers
                )
            assert response.status_code == 200, response.text
            settle = _decode(response.headers["x-payment-response"])
            assert settle["success"] is True
            assert settle["network"] == "base-sepolia"
            assert gate.count(PaymentState.CHARGEABLE) == 1
        finally:
            await server.stop()
            await app.aclose()
            gate.journal.close()

    async def test_stream_first_byte_before_upstream_finishes(self, gate: Gate) -> None:
        """SSE is relayed as it is generated, the usage chunk the client did not ask for is
        removed, and the receipt holds the usage price."""
        body = _chat("held", stream=True, max_tokens=24)
        async with (
            _sdk_client(gate.chain.payer) as client,
            client.stream("POST", f"{gate.url}/v1/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            settle = _decode(response.headers["payment-response"])
            assert settle["extra"]["charge"] == "pending"
            lines = response.aiter_lines()
            first = await anext(lines)
            assert first.startswith("data: ")
            held = [
                r for r in gate.upstream_api.requests if r.body and r.body.get("model") == "held"
            ]
            assert not held[-1].finished
            gate.upstream_api.release()
            rest = [first] + [line async for line in lines]
        events = [line[6:] for line in rest if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert not any('"usage"' in e and '"choices":[]' in e for e in events)
        record = gate.journal.get(settle["extra"]["receiptId"])
        assert record is not None
        assert record.state is PaymentState.CHARGEABLE
        quote = gate.quote(body)
        assert record.charge == charge_for_usage(
            quote, record.prompt_tokens or 0, record.completion_tokens or 0
        )
        assert held[-1].body["stream_options"] == {"include_usage": True}


def _now() -> int:
    import time

    return int(time.time())


class TestNeverChargedForFailures:
    async def test_upstream_error_releases(self, gate: Gate) -> None:
        """An upstream 500 is relayed, the payment released and the authorization never used."""
        async with _sdk_client(gate.chain.payer) as client:
            response = await client.post(
                f"{gate.url}/v1/chat/completions",
                json=_chat(max_tokens=8),
                headers={"x-fake-failure": "http_500"},
            )
        assert response.status_code == 500
        settle = _decode(response.headers["payment-response"])
        assert settle["success"] is False
        assert settle["errorReason"] == "upstream_error"
        record = gate.journal.get(settle["extra"]["receiptId"])
        assert record is not None
        assert record.state is PaymentState.RELEASED
        assert not gate.chain.token.authorization_state(
            record.payer, bytes.fromhex(record.nonce[2:])
        )

    async def test_unreachable_upstream_releases(
        self, tmp_path: Path, chain: Chain, upstream_api: FakeUpstream
    ) -> None:
        """No upstream at all: 502, released, and the client is told it was not charged."""
        gate, server, app = await _start_gate(tmp_path, chain, "http://127.0.0.1:9", upstream_api)
        try:
            async with _sdk_client(chain.payer) as client:
                response = await client.post(
                    f"{gate.url}/v1/chat/completions", json=_chat(max_tokens=8)
                )
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "upstream_unreachable"
            settle = _decode(response.headers["payment-response"])
            assert settle["success"] is False
            assert gate.count(PaymentState.RELEASED) == 1
            assert gate.count(PaymentState.CHARGEABLE) == 0
        finally:
            await server.stop()
            await app.aclose()
            gate.journal.close()

    async def test_client_leaving_before_any_token_releases(self, gate: Gate) -> None:
        """A client that disconnects before the first token pays nothing."""
        body = _chat("slow-start", max_tokens=24)
        requirements = await _requirements(gate, body)
        header = encode_header(
            sign_payment(gate.chain.payer, requirements, gate.chain.domain, now=_now())
        )
        async with httpx.AsyncClient() as client:
            request = asyncio.ensure_future(
                client.post(
                    f"{gate.url}/v1/chat/completions",
                    json=body,
                    headers={"PAYMENT-SIGNATURE": header},
                )
            )
            await _until(lambda: gate.count(PaymentState.ACCEPTED) == 1)
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
        await _until(lambda: gate.count(PaymentState.RELEASED) == 1)
        assert gate.count(PaymentState.CHARGEABLE) == 0
        assert gate.count(PaymentState.ACCEPTED) == 0

    async def test_client_leaving_mid_stream_pays_for_what_it_got(self, gate: Gate) -> None:
        """Tokens already streamed are charged (estimated, capped), not the quote."""
        body = _chat("held", stream=True, max_tokens=24)
        requirements = await _requirements(gate, body)
        header = encode_header(
            sign_payment(gate.chain.payer, requirements, gate.chain.domain, now=_now())
        )
        async with (
            httpx.AsyncClient() as client,
            client.stream(
                "POST",
                f"{gate.url}/v1/chat/completions",
                json=body,
                headers={"PAYMENT-SIGNATURE": header},
            ) as response,
        ):
            receipt_id = _decode(response.headers["payment-response"])["extra"]["receiptId"]
            seen = ""
            async for text in response.aiter_text():
                seen += text
                if seen.count('"content"') >= 3:  # the role chunk and two content chunks
                    break
        await _until(lambda: gate.count(PaymentState.CHARGEABLE) == 1)
        record = gate.journal.get(receipt_id)
        assert record is not None
        assert record.charge is not None
        assert 0 < record.charge < int(requirements.amount)
        assert record.completion_tokens is not None
        assert 0 < record.completion_tokens < 24
        gate.upstream_api.release()

    async def test_upstream_breaking_mid_stream(self, gate: Gate) -> None:
        """An upstream that drops the stream after some tokens: the client keeps what it
        got and pays for that much; the stream ends rather than hanging."""
        body = _chat(stream=True, max_tokens=24)
        async with (
            _sdk_client(gate.chain.payer) as client,
            client.stream(
                "POST",
                f"{gate.url}/v1/chat/completions",
                json=body,
                headers={"x-fake-failure": "close_mid_stream"},
            ) as response,
        ):
            receipt_id = _decode(response.headers["payment-response"])["extra"]["receiptId"]
            text = "".join([chunk async for chunk in response.aiter_text()])
        assert "[DONE]" not in text
        record = gate.journal.get(receipt_id)
        assert record is not None
        assert record.state is PaymentState.CHARGEABLE
        quote = gate.quote(body)
        assert record.charge is not None
        assert record.charge < quote.amount


async def _until(condition: Any) -> None:
    """Poll a condition the server reaches on its own (no timing is asserted)."""
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def _bad(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


class TestBadInput:
    @pytest.mark.parametrize(
        ("make_header", "status", "reason"),
        [
            (lambda p: "%%% not base64 %%%", 400, "invalid_payload"),
            (lambda p: base64.b64encode(b"{nope").decode(), 400, "invalid_payload"),
            (lambda p: "A" * 20000, 400, "invalid_payload"),
            (
                lambda p: encode_header(_bad(p, ("payload", "authorization", "value"), 5)),
                400,
                "invalid_payload",
            ),
            (lambda p: encode_header({**p, "x402Version": 3}), 402, "invalid_x402_version"),
            (
                lambda p: encode_header(_bad(p, ("accepted", "scheme"), "upto")),
                402,
                "unsupported_scheme",
            ),
            (
                lambda p: encode_header(_bad(p, ("accepted", "network"), "eip155:1")),
                402,
                "network_mismatch",
            ),
            (
                lambda p: encode_header(_bad(p, ("accepted", "asset"), "0x" + "12" * 20)),
                402,
                "invalid_payment_requirements",
            ),
            (
                lambda p: encode_header(_bad(p, ("accepted", "payTo"), "0x" + "12" * 20)),
                402,
                "invalid_payment_requirements",
            ),
            (
                lambda p: encode_header(_bad(p, ("accepted", "amount"), "1")),
                402,
                "invalid_payment_requirements",
            ),
            (
                lambda p: encode_header(
                    _bad(p, ("payload", "authorization", "to"), "0x" + "12" * 20)
                ),
                402,
                "invalid_exact_evm_payload_recipient_mismatch",
            ),
            (
                lambda p: encode_header(_bad(p, ("payload", "authorization", "value"), "1")),
                402,
                "invalid_exact_evm_payload_authorization_value_mismatch",
            ),
            (
                lambda p: encode_header(_bad(p, ("payload", "authorization", "validBefore"), "1")),
                402,
                "invalid_exact_evm_payload_authorization_valid_before",
            ),
            (
                lambda p: encode_header(
                    _bad(p, ("payload", "authorization", "validAfter"), str(2**40))
                ),
                402,
                "invalid_exact_evm_payload_authorization_valid_after",
            ),
            (
                lambda p: encode_header(_bad(p, ("payload", "signature"), "0x" + "11" * 65)),
                402,
                "invalid_exact_evm_payload_signature",
            ),
        ],
    )
    async def test_bad_payment_header(
        self, gate: Gate, make_header: Any, status: int, reason: str
    ) -> None:
        """Each bad payment gets its status and reason; nothing is journalled; nothing forwarded."""
        body = _chat(max_tokens=8)
        requirements = await _requirements(gate, body)
        payload = sign_payment(gate.chain.payer, requirements, gate.chain.domain, now=_now())
        forwarded = len(gate.upstream_api.requests)
        response = await _paid(gate, body, make_header(payload))
        assert response.status_code == status, response.text
        if status == 402:
            assert response.json()["error"] == reason
            assert _decode(response.headers["payment-required"])["error"] == reason
        else:
            assert response.json()["error"]["code"] == reason
        assert gate.count(PaymentState.ACCEPTED) == 0
        assert gate.count(PaymentState.CHARGEABLE) == 0
        assert len(gate.upstream_api.requests) == forwarded

    async def test_signed_for_another_token(self, gate: Gate) -> None:
        """A signature in another token's domain is refused."""
        body = _chat(max_tokens=8)
        requirements = await _requirements(gate, body)
        other = TokenDomain("USDC", "2", 31337, gate.chain.domain.address)
        response = await _paid(
            gate,
            body,
            encode_header(sign_payment(gate.chain.payer, requirements, other, now=_now())),
        )
        assert response.status_code == 402
        assert response.json()["error"] == "invalid_exact_evm_payload_signature"

    async def test_replay_refused(self, gate: Gate) -> None:
        """The same authorization twice: served once, then refused as used."""
        body = _chat(max_tokens=8)
        requirements = await _requirements(gate, body)
        header = encode_header(
            sign_payment(gate.chain.payer, requirements, gate.chain.domain, now=_now())
        )
        assert (await _paid(gate, body, header)).status_code == 200
        again = await _paid(gate, body, header)
        assert again.status_code == 402
        assert again.json()["error"] == "invalid_exact_evm_nonce_already_used"

    async def test_unfunded_payer(self, gate: Gate) -> None:
        """A payer without funds is refused before anything is forwarded."""
        body = _chat(max_tokens=8)
        requirements = await _requirements(gate, body)
        pauper = Account.from_key("0x" + "6b" * 32)
        response = await _paid(
            gate,
            body,
            encode_header(sign_payment(pauper, requirements, gate.chain.domain, now=_now())),
        )
        assert response.status_code == 402
        assert response.json()["error"] == "invalid_exact_evm_insufficient_balance"
        assert gate.count(PaymentState.ACCEPTED) == 0

    @pytest.mark.parametrize(
        ("content", "status", "code"),
        [
            (b"{not json", 400, "invalid_json"),
            (b"[1,2]", 400, "invalid_json"),
            (b"[" * 60_000, 400, "invalid_json"),  # would crash CPython's decoder unbounded
            (json.dumps({"model": "unknown-model"}).encode(), 404, "model_not_found"),
            (
                json.dumps({"model": "fake-model", "max_tokens": "many"}).encode(),
                400,
                "invalid_request",
            ),
            (b"{" + b" " * 70_000 + b"}", 413, "body_too_large"),
        ],
    )
    async def test_bad_request_body(
        self, gate: Gate, content: bytes, status: int, code: str
    ) -> None:
        """Bodies that are not JSON, unpriced models and oversized bodies never reach payment."""
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{gate.url}/v1/chat/completions",
                content=content,
                headers={"content-type": "application/json", "PAYMENT-SIGNATURE": "AAAA"},
            )
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert gate.count(PaymentState.ACCEPTED) == 0


class TestReplayUnderConcurrency:
    async def test_hundred_copies_one_served(self, gate: Gate) -> None:
        """100 concurrent copies of one payment: exactly one reaches the model."""
        body = _chat(max_tokens=8)
        requirements = await _requirements(gate, body)
        header = encode_header(
            sign_payment(gate.chain.payer, requirements, gate.chain.domain, now=_now())
        )
        before = len(gate.upstream_api.requests)
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{gate.url}/v1/chat/completions",
                        json=body,
                        headers={"PAYMENT-SIGNATURE": header},
                    )
                    for _ in range(100)
                )
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) == 1
        assert statuses.count(402) == 99
        assert {r.json()["error"] for r in responses if r.status_code == 402} == {
            "invalid_exact_evm_nonce_already_used"
        }
        assert len(gate.upstream_api.requests) == before + 1
        assert gate.count(PaymentState.CHARGEABLE) == 1


class TestFreeRoutes:
    async def test_models_with_prices_and_binding_prefix(self, gate: Gate) -> None:
        """/v1/models lists the mesh's models with prices, also under the binding path."""
        async with httpx.AsyncClient() as client:
            direct = (await client.get(f"{gate.url}/v1/models")).json()
            prefixed = (await client.get(f"{gate.url}/api/plugins/x402/http/v1/models")).json()
        assert direct == prefixed
        entries = {m["id"]: m["x402"] for m in direct["data"]}
        assert entries["fake-model"]["price"] == {
            "base": "2000",
            "promptPer1k": "1000",
            "completionPer1k": "4000",
        }
        assert entries["unpriced"]["payable"] is False  # unknown_models = refuse
        assert entries["fake-model"]["payTo"] == gate.chain.deployment.settlement

    async def test_registration_and_unknown_receipt(self, gate: Gate) -> None:
        """The registration file names the x402 endpoints; an unknown receipt is 404."""
        async with httpx.AsyncClient() as client:
            registration = (
                await client.get(f"{gate.url}/.well-known/agent-registration.json")
            ).json()
            missing = await client.get(f"{gate.url}/x402/receipts/{'0' * 32}")
        assert registration["x402Support"] is True
        assert registration["services"][0]["endpoint"] == f"{gate.url}/v1/chat/completions"
        assert missing.status_code == 404


class TestStartUp:
    async def test_needs_token_and_settlement(self, tmp_path: Path) -> None:
        """A node config without contract addresses cannot take payments: a clear error."""
        with pytest.raises(ConfigError, match=r"chain\.token and chain\.settlement"):
            await open_gate(NodeConfig(path=tmp_path / "node.toml"))

    async def test_domain_read_from_the_chain(self, gate: Gate) -> None:
        """The 402 names the token's own EIP-712 domain, as the chain reports it."""
        requirements = await _requirements(gate, _chat(max_tokens=4))
        token = gate.chain.token
        assert requirements.extra == {"name": token.name(), "version": token.version()}
        assert requirements.asset == token.address
        assert requirements.pay_to == gate.chain.deployment.settlement

    async def test_interrupted_payment_released_on_start(
        self, tmp_path: Path, chain: Chain, upstream_api: FakeUpstream
    ) -> None:
        """A payment a killed process left in flight is released when the gate starts."""
        journal = Journal.in_state_dir(tmp_path / "state")
        journal.claim(
            NewPayment(
                receipt_id="f" * 32,
                request_id="killed",
                payer=chain.payer.address,
                nonce="0x" + "42" * 32,
                value=1000,
                valid_after=0,
                valid_before=_now() + 300,
                signature="0x" + "11" * 65,
                network="eip155:31337",
                asset=chain.deployment.token,
                pay_to=chain.deployment.settlement,
                model="fake-model",
                x402_version=2,
            ),
            spendable=None,
        )
        journal.close()
        gate, server, app = await _start_gate(tmp_path, chain, upstream_api.url, upstream_api)
        try:
            async with httpx.AsyncClient() as client:
                receipt = (await client.get(f"{gate.url}/x402/receipts/{'f' * 32}")).json()
            assert receipt["state"] == "released"
            assert receipt["reason"] == "interrupted"
        finally:
            await server.stop()
            await app.aclose()
            gate.journal.close()


class TestBindingSocket:
    async def test_paid_request_as_the_host_relays_it(
        self, tmp_path: Path, chain: Chain, upstream_api: FakeUpstream
    ) -> None:
        """Over the binding's Unix socket, with the host's framing (whole request,
        `Connection: close`, half-close, read to EOF), a paid request is served."""
        gate, server, app = await _start_gate(tmp_path, chain, upstream_api.url, upstream_api)
        binding = HttpServer(app)
        sock_path = tmp_path / "http.sock"
        binding.listen_unix(sock_path)
        await binding.start()
        try:
            body = _chat(max_tokens=8)
            requirements = await _requirements(gate, body)
            header = encode_header(
                sign_payment(chain.payer, requirements, chain.domain, now=_now())
            )
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            raw = (
                b"POST /v1/chat/completions HTTP/1.1\r\n"
                b"Host: 127.0.0.1:3131\r\n"
                b"Content-Type: application/json\r\n"
                b"Connection: close\r\n"
                b"x-request-id: 2f1e0c6e-7d6a-4c3b-9d3c-1d2e3f405162\r\n"
                + f"Content-Length: {len(content)}\r\n".encode()
                + f"PAYMENT-SIGNATURE: {header}\r\n\r\n".encode()
                + content
            )
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(raw)
            await writer.drain()
            writer.write_eof()  # the host half-closes once the request is written
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            head, _, payload = answer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0] == "HTTP/1.1 200 OK"
            fields = dict(line.split(": ", 1) for line in lines[1:])
            settle = _decode(fields["payment-response"])
            assert settle["success"] is True
            assert json.loads(payload)["usage"]["completion_tokens"] == 8
            record = gate.journal.get(settle["extra"]["receiptId"])
            assert record is not None
            assert record.state is PaymentState.CHARGEABLE
        finally:
            await binding.stop()
            await server.stop()
            await app.aclose()
            gate.journal.close()
