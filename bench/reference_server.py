"""The reference: plain x402 as the official SDK does it, in front of the fake API.

A FastAPI app with the x402 SDK's FastAPI payment middleware
(`x402.http.middleware.fastapi.payment_middleware`) and an in-process
facilitator: the SDK's `x402Facilitator` with its exact-EVM scheme and
`FacilitatorWeb3Signer`, which verifies each payment against the chain and
settles it with one `transferWithAuthorization` transaction, on the same
anvil (through the counting proxy) that the gate uses. Route handlers pass
requests to the fake mesh-llm API with a pooled httpx client, as any
FastAPI proxy would; `GET /v1/models` is the free route.

    python bench/reference_server.py --rpc URL --upstream URL --token ADDR \
        --token-name NAME --token-version V --pay-to ADDR --amount N --key-file PATH

prints `READY http://127.0.0.1:PORT` once it listens; stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from procs import serve_until_stdin_closes
from x402 import x402Facilitator, x402ResourceServer
from x402.http.middleware.fastapi import payment_middleware
from x402.http.types import PaymentOption, RouteConfig
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact.register import (
    register_exact_evm_facilitator,
    register_exact_evm_server,
)
from x402.schemas import AssetAmount

NETWORK = "eip155:31337"


def build_app(args: argparse.Namespace) -> FastAPI:
    signer = FacilitatorWeb3Signer(
        private_key=Path(args.key_file).read_text().strip(), rpc_url=args.rpc
    )
    facilitator = x402Facilitator()
    register_exact_evm_facilitator(facilitator, signer, networks=NETWORK)
    server = x402ResourceServer(facilitator)  # the facilitator is the client: in-process
    register_exact_evm_server(server, NETWORK)
    price = AssetAmount(
        amount=str(args.amount),
        asset=args.token,
        extra={"name": args.token_name, "version": args.token_version},
    )
    routes = {
        "POST /v1/chat/completions": RouteConfig(
            accepts=PaymentOption(scheme="exact", pay_to=args.pay_to, price=price, network=NETWORK)
        )
    }
    app = FastAPI()
    # Idle connections dropped after 2 s, before the fake API's own 5 s (see load.client).
    upstream = httpx.AsyncClient(
        base_url=args.upstream,
        timeout=60,
        trust_env=False,
        limits=httpx.Limits(keepalive_expiry=2.0),
    )
    app.middleware("http")(payment_middleware(routes, server))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        upstream_request = upstream.build_request(
            "POST",
            "/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
        reply = await upstream.send(upstream_request, stream=True)
        kind = reply.headers.get("content-type", "application/json")
        if kind.startswith("text/event-stream"):

            async def relay() -> Any:
                try:
                    async for chunk in reply.aiter_raw():
                        yield chunk
                finally:
                    await reply.aclose()

            return StreamingResponse(relay(), status_code=reply.status_code, media_type=kind)
        content = await reply.aread()
        await reply.aclose()
        return Response(content, status_code=reply.status_code, media_type=kind)

    @app.get("/v1/models")
    async def models() -> Response:
        reply = await upstream.get("/v1/models")
        return Response(reply.content, status_code=reply.status_code, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("rpc", "upstream", "token", "token-name", "token-version", "pay-to", "key-file"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--amount", required=True, type=int, help="price per request, atomic units")
    asyncio.run(serve_until_stdin_closes(build_app(parser.parse_args())))


if __name__ == "__main__":
    main()
