"""A paying client built on the official x402 SDK: quote, pay, answer, receipt.

The SDK's httpx transport does the x402 dance (402 -> sign an EIP-3009
authorization -> retry with `PAYMENT-SIGNATURE`); this module adds what a
person or the devnet wants to see around it: the quote the node asked
(captured by the SDK's before-payment hook), the authorization the client
signed (after-payment hook), the answer (as it streams, for SSE), the
decoded `PAYMENT-RESPONSE`, and the node's receipt (`GET /x402/receipts/{id}`).

One exchange at a time per `PayingClient` (a lock), so the hooks' captures
belong to the exchange in progress; run several clients for concurrency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http.clients.httpx import PaymentError, x402AsyncTransport
from x402.http.utils import decode_payment_response_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas.hooks import PaymentCreatedContext, PaymentCreationContext

__all__ = ["Exchange", "PayingClient", "Quote", "base_url"]

_PAYMENT_RESPONSE_HEADERS = ("payment-response", "x-payment-response")


def base_url(url: str) -> str:
    """The node's base URL: a trailing slash or a trailing `/v1/chat/completions` removed."""
    url = url.rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions"):
        url = url.removesuffix(suffix)
    return url


@dataclass(frozen=True)
class Quote:
    """The requirement the client chose from the node's 402: what it agreed to authorize."""

    amount: int
    asset: str
    pay_to: str
    network: str
    scheme: str
    max_timeout_seconds: int


@dataclass
class Exchange:
    """One paid request and everything seen about it.

    Attributes:
        status: the final HTTP status (200 when served).
        quote: the 402 requirement that was paid (None: no 402 was seen).
        authorized: the value of the signed EIP-3009 authorization.
        nonce: its nonce (0x hex).
        payer: the client's address.
        settle: the decoded `PAYMENT-RESPONSE` (SDK `SettleResponse` as JSON).
        text: the answer's text (message content or completion text).
        usage: the usage block of the answer, when the answer carried one.
        receipt: the node's `GET /x402/receipts/{id}` document, when fetched.
        error: why the exchange failed, in one line (None when served).
    """

    status: int = 0
    quote: Quote | None = None
    authorized: int | None = None
    nonce: str | None = None
    payer: str = ""
    settle: dict[str, Any] | None = None
    text: str = ""
    usage: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    error: str | None = None

    @property
    def receipt_id(self) -> str | None:
        extra = (self.settle or {}).get("extra") or {}
        value = extra.get("receiptId")
        return value if isinstance(value, str) else None


def _text_of(document: dict[str, Any]) -> str:
    parts = []
    for choice in document.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


class PayingClient:
    """Pays for chat completions with one account, through the x402 SDK.

    Args:
        account: the payer's key (signs EIP-3009 authorizations locally).
        timeout: seconds for each HTTP exchange.
        spend_controls: the SDK's spend caps; off by default because a local
            chain's token is not on the SDK's list of known assets.
    """

    def __init__(
        self, account: LocalAccount, *, timeout: float = 60.0, spend_controls: bool = False
    ) -> None:
        self.account = account
        self._quote: Quote | None = None
        self._authorization: dict[str, Any] | None = None
        self._quote_seen: Callable[[Quote], None] | None = None
        sdk = x402Client()
        register_exact_evm_client(sdk, EthAccountSigner(account))
        if not spend_controls:
            sdk.set_spend_controls(False)
        sdk.on_before_payment_creation(self._on_quote)
        sdk.on_after_payment_creation(self._on_payment)
        self._http = httpx.AsyncClient(transport=x402AsyncTransport(sdk), timeout=timeout)
        self._plain = httpx.AsyncClient(timeout=timeout)
        self._lock = asyncio.Lock()

    def _on_quote(self, ctx: PaymentCreationContext) -> None:
        req = ctx.selected_requirements
        # v2 names it `amount`, v1 `max_amount_required`.
        amount = str(getattr(req, "amount", None) or getattr(req, "max_amount_required", "0"))
        self._quote = Quote(
            amount=int(amount),
            asset=req.asset,
            pay_to=req.pay_to,
            network=req.network,
            scheme=req.scheme,
            max_timeout_seconds=req.max_timeout_seconds,
        )
        if self._quote_seen is not None:
            self._quote_seen(self._quote)

    def _on_payment(self, ctx: PaymentCreatedContext) -> None:
        payload = ctx.payment_payload.payload
        authorization = payload.get("authorization") if isinstance(payload, dict) else None
        self._authorization = authorization if isinstance(authorization, dict) else None

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._plain.aclose()

    async def __aenter__(self) -> PayingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def chat(
        self,
        url: str,
        model: str,
        prompt: str,
        *,
        stream: bool = False,
        max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
        on_quote: Callable[[Quote], None] | None = None,
    ) -> Exchange:
        """Pay for one chat completion at the node `url` and return what happened.

        `on_quote` sees the quote before the payment is signed; `on_text` sees
        the answer's text as it arrives.

        Errors (a refused payment, an unreachable node, a broken stream) are
        returned in `Exchange.error`, never raised, so a run of many requests
        reports each one.
        """
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        base = base_url(url)
        async with self._lock:
            self._quote, self._authorization = None, None
            self._quote_seen = on_quote
            exchange = Exchange(payer=self.account.address)
            try:
                await self._send(f"{base}/v1/chat/completions", body, exchange, on_text)
            except (httpx.HTTPError, PaymentError) as exc:
                exchange.error = f"{type(exc).__name__}: {exc}"
            exchange.quote = self._quote
            if self._authorization is not None:
                exchange.authorized = int(self._authorization.get("value", 0))
                exchange.nonce = str(self._authorization.get("nonce"))
        if exchange.receipt_id is not None:
            exchange.receipt = await self.receipt(base, exchange.receipt_id)
        return exchange

    async def _send(
        self,
        url: str,
        body: dict[str, Any],
        exchange: Exchange,
        on_text: Callable[[str], None] | None,
    ) -> None:
        async with self._http.stream("POST", url, json=body) as response:
            exchange.status = response.status_code
            for name in _PAYMENT_RESPONSE_HEADERS:
                if name in response.headers:
                    settle = decode_payment_response_header(response.headers[name])
                    exchange.settle = settle.model_dump(by_alias=True, exclude_none=True)
            is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
            if response.status_code == 200 and is_sse:
                await self._read_sse(response, exchange, on_text)
                return
            raw = await response.aread()
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if response.status_code != 200:
            message = None
            if isinstance(document, dict):
                error = document.get("error")
                message = error.get("message") if isinstance(error, dict) else document.get("error")
            exchange.error = f"HTTP {response.status_code}: {message or raw[:200]!r}"
            return
        if not isinstance(document, dict):
            exchange.error = "the answer is not a JSON object"
            return
        exchange.text = _text_of(document)
        if on_text is not None:
            on_text(exchange.text)
        usage = document.get("usage")
        exchange.usage = usage if isinstance(usage, dict) else None

    @staticmethod
    async def _read_sse(
        response: httpx.Response, exchange: Exchange, on_text: Callable[[str], None] | None
    ) -> None:
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            try:
                document = json.loads(data)
            except ValueError:
                continue
            if not isinstance(document, dict):
                continue
            piece = _text_of(document)
            if piece:
                exchange.text += piece
                if on_text is not None:
                    on_text(piece)
            if isinstance(document.get("usage"), dict):
                exchange.usage = document["usage"]
        if not done:
            exchange.error = "the stream ended before [DONE]"

    async def receipt(self, url: str, receipt_id: str) -> dict[str, Any] | None:
        """The node's receipt document for `receipt_id` (None when it has none)."""
        try:
            response = await self._plain.get(f"{base_url(url)}/x402/receipts/{receipt_id}")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            document = response.json()
        except ValueError:
            return None
        return document if isinstance(document, dict) else None
