"""The plugin's one HTTP application, served on the binding socket and the gateway.

A plain ASGI router (a dict lookup), not a framework: the paid routes
stream, and the gate must see the client's disconnect itself.

The host writes the binding path into the raw request it relays
(`/v1/chat/completions`), but a relay that keeps the management path
(`/api/plugins/<name>/http/v1/...`) is understood too: that prefix is
removed before routing.

Routes:
    POST /v1/chat/completions, POST /v1/completions   paid (see `paywall`)
    GET  /v1/models                                   free: the mesh's models and prices
    GET  /.well-known/agent-registration.json         the ERC-8004 registration file
    GET  /x402/receipts/{id}                          a payment and its settlement state
"""

from __future__ import annotations

import re
from typing import Any, Final

from mesh_x402.config import Price
from mesh_x402.core.pricing import price_for
from mesh_x402.errors import ConfigError
from mesh_x402.http.activity import Activity
from mesh_x402.http.context import GateContext
from mesh_x402.http.paywall import Paywall, json_response
from mesh_x402.http.server import Receive, Scope, Send
from mesh_x402.http.upstream import UpstreamError
from mesh_x402.store.journal import Journal, PaymentRecord

__all__ = ["PAID_PATHS", "GateApp", "GateContext", "build_app", "strip_binding_prefix"]

PAID_PATHS: Final = frozenset({"/v1/chat/completions", "/v1/completions"})
_BINDING_PREFIX: Final = re.compile(r"^/api/plugins/[^/]+/http(?=/)")
_RECEIPT: Final = re.compile(r"^/x402/receipts/([0-9a-f]{32})$")
_REGISTRATION_TYPE: Final = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"


def strip_binding_prefix(path: str) -> str:
    """`/api/plugins/x402/http/v1/models` -> `/v1/models`; other paths unchanged."""
    return _BINDING_PREFIX.sub("", path, count=1)


def _not_found(path: str) -> dict[str, Any]:
    return {"error": {"message": f"no route {path}", "type": "not_found", "code": "not_found"}}


def _price_json(price: Price) -> dict[str, str]:
    return {
        "base": str(price.base),
        "promptPer1k": str(price.prompt_per_1k),
        "completionPer1k": str(price.completion_per_1k),
    }


def _receipt_json(record: PaymentRecord) -> dict[str, Any]:
    usage = None
    if record.prompt_tokens is not None and record.completion_tokens is not None:
        usage = {
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens,
        }
    return {
        "receiptId": record.receipt_id,
        "requestId": record.request_id,
        "state": record.state.value,
        "payer": record.payer,
        "nonce": record.nonce,
        "model": record.model,
        "network": record.network,
        "asset": record.asset,
        "payTo": record.pay_to,
        "authorized": str(record.value),
        "charge": None if record.charge is None else str(record.charge),
        "usage": usage,
        "reason": record.reason,
        "transaction": record.transaction,
        "x402Version": record.x402_version,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
    }


class GateApp:
    """The ASGI app. It owns the context's journal and upstream client: call
    `aclose()` once the servers using it have stopped."""

    def __init__(self, ctx: GateContext) -> None:
        self._ctx = ctx
        self._paywall = Paywall(ctx)

    @property
    def journal(self) -> Journal:
        """The gate's journal, for the rest of the node to share (it stays the gate's)."""
        return self._ctx.journal

    @property
    def activity(self) -> Activity:
        """When the gate last served a paid request (the reconciler waits for a lull)."""
        return self._paywall.activity

    async def aclose(self) -> None:
        """Finish queued journal writes, close the upstream pool and the journal."""
        self._paywall.close()
        await self._ctx.upstream.aclose()
        self._ctx.journal.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request."""
        if scope["type"] != "http":
            return
        path = strip_binding_prefix(scope.get("path", "/"))
        method = scope.get("method", "GET")
        if path in PAID_PATHS:
            if method != "POST":
                await self._method_not_allowed(send, "POST")
                return
            await self._paywall.serve(scope, receive, send, path)
            return
        if method != "GET":
            known = path == "/v1/models" or path.startswith(("/x402/", "/.well-known/"))
            if known:
                await self._method_not_allowed(send, "GET")
            else:
                await json_response(send, 404, _not_found(path))
            return
        if path == "/v1/models":
            await self._models(send)
        elif path == "/.well-known/agent-registration.json":
            await self._registration(scope, send)
        elif match := _RECEIPT.match(path):
            record = self._ctx.journal.get(match.group(1))
            if record is None:
                await json_response(send, 404, _not_found(path))
            else:
                await json_response(send, 200, _receipt_json(record))
        else:
            await json_response(send, 404, _not_found(path))

    @staticmethod
    async def _method_not_allowed(send: Send, allowed: str) -> None:
        await json_response(
            send,
            405,
            {"error": {"message": f"use {allowed}", "type": "invalid_request_error"}},
            [(b"allow", allowed.encode())],
        )

    async def _models(self, send: Send) -> None:
        ctx = self._ctx
        try:
            models = await ctx.upstream.get_models()
        except UpstreamError as exc:
            await json_response(
                send,
                502,
                {"error": {"message": str(exc), "type": "upstream_error", "code": exc.reason}},
            )
            return
        data = []
        for entry in models:
            price = price_for(ctx.config.pricing, entry["id"])
            data.append(
                {
                    **entry,
                    "x402": {
                        "payable": price is not None,
                        "price": None if price is None else _price_json(price),
                        "asset": ctx.token.address,
                        "network": ctx.token.network,
                        "payTo": ctx.pay_to,
                        "priceVersion": ctx.config.pricing.version,
                    },
                }
            )
        await json_response(send, 200, {"object": "list", "data": data})

    async def _registration(self, scope: Scope, send: Send) -> None:
        ctx = self._ctx
        base = ctx.public_url
        if base is None:
            host = "localhost"
            for name, value in scope.get("headers", ()):
                if name.lower() == b"host":
                    host = value.decode("latin-1")
            base = f"{scope.get('scheme', 'http')}://{host}"
        registrations = []
        if ctx.agent_id is not None and ctx.identity_registry is not None:
            registrations.append(
                {
                    "agentId": ctx.agent_id,
                    "agentRegistry": f"eip155:{ctx.token.chain_id}:{ctx.identity_registry}",
                }
            )
        await json_response(
            send,
            200,
            {
                "type": _REGISTRATION_TYPE,
                "name": "mesh-llm x402 node",
                "description": "Paid OpenAI-compatible inference on a mesh-llm mesh (x402 exact).",
                "image": "",
                "services": [
                    {"name": "x402", "endpoint": f"{base}/v1/chat/completions", "version": "2"},
                    {"name": "x402", "endpoint": f"{base}/v1/completions", "version": "2"},
                    {"name": "models", "endpoint": f"{base}/v1/models"},
                ],
                "x402Support": True,
                "active": True,
                "registrations": registrations,
            },
        )


def build_app(ctx: GateContext) -> GateApp:
    """The gate's ASGI app for `ctx`.

    Raises:
        ConfigError: settlement mode `immediate` without a settler to settle
            with, or a settler in mode `deferred` (it would never be used).
    """
    immediate = ctx.config.settlement.mode == "immediate"
    if immediate and ctx.settler is None:
        raise ConfigError(
            "settlement.mode 'immediate' needs the node's chain key and contracts "
            "to settle with (no settler was given)"
        )
    if not immediate and ctx.settler is not None:
        raise ConfigError("a settler was given but settlement.mode is 'deferred'")
    return GateApp(ctx)
