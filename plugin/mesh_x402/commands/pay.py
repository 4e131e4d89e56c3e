"""`mesh-x402 pay`: pay a node for one chat completion, the way any x402 client would.

    mesh-x402 pay --url URL (--key-file F | --key-env VAR) --model M
        [--stream] [--max-tokens N] [--json] "prompt"

Built on the official x402 SDK client. Shows the node's 402 quote (amount,
asset, payTo, network), pays it with an EIP-3009 authorization signed by
the key, prints the answer (as it arrives with `--stream`), then the
receipt: the decoded `PAYMENT-RESPONSE` (charged amount, receipt id) and
the node's `GET /x402/receipts/{id}`. `URL` is the node's base URL, e.g.
its gateway `http://127.0.0.1:9402`. Everything but the answer goes to
stderr, so `mesh-x402 pay ... > answer.txt` keeps just the text; `--json`
prints one JSON document instead. Exit code 0 when paid and answered, 1
otherwise, 2 for bad input. The key is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from mesh_x402.commands._chain import account_from_args, add_key_args, quiet_logs
from mesh_x402.devnet.clients import Exchange, PayingClient, Quote, base_url
from mesh_x402.errors import ConfigError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the node's base URL (its gateway)")
    add_key_args(parser, "payer")
    parser.add_argument("--model", required=True, help="the model to ask")
    parser.add_argument("--stream", action="store_true", help="stream the answer (SSE)")
    parser.add_argument("--max-tokens", type=int, help="completion token limit (lowers the quote)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("prompt", help="what to ask")


def _quote_line(quote: Quote) -> str:
    return (
        f"quote: {quote.amount} atomic units of {quote.asset} on {quote.network} "
        f"({quote.scheme}), payTo {quote.pay_to}, valid {quote.max_timeout_seconds} s"
    )


def _receipt_lines(exchange: Exchange) -> list[str]:
    settle = exchange.settle or {}
    extra = settle.get("extra") or {}
    if settle.get("success"):
        charged = settle.get("amount") or extra.get("charge")
        lines = [
            f"paid: {charged} of {exchange.authorized} authorized by {settle.get('payer')} "
            f"(settlement {extra.get('settlement', 'deferred')})"
        ]
    else:
        lines = [
            f"not charged: {settle.get('errorReason') or 'refused'}; the node released the "
            "payment and will never execute the authorization"
        ]
    lines.append(f"receipt id: {exchange.receipt_id}")
    receipt = exchange.receipt
    if receipt is not None:
        usage = receipt.get("usage")
        tokens = (
            f"{usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} completion"
            if isinstance(usage, dict)
            else "none metered"
        )
        charge = receipt.get("charge")
        lines.append(
            f"receipt: state {receipt.get('state')}, charge "
            f"{'none' if charge is None else charge} of {receipt.get('authorized')} authorized, "
            f"tokens {tokens}, model {receipt.get('model')}"
        )
    elif exchange.receipt_id is not None:
        lines.append("receipt: this URL does not serve /x402/receipts/{id} (try the gateway)")
    return lines


def _document(exchange: Exchange) -> dict[str, Any]:
    quote = exchange.quote
    return {
        "status": exchange.status,
        "quote": None
        if quote is None
        else {
            "amount": str(quote.amount),
            "asset": quote.asset,
            "payTo": quote.pay_to,
            "network": quote.network,
            "scheme": quote.scheme,
        },
        "authorized": None if exchange.authorized is None else str(exchange.authorized),
        "paymentResponse": exchange.settle,
        "answer": exchange.text,
        "usage": exchange.usage,
        "receipt": exchange.receipt,
        "error": exchange.error,
    }


async def _pay(args: argparse.Namespace) -> int:
    account = account_from_args(args.key_file, args.key_env)
    streamed_text = args.stream and not args.json

    def on_text(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    def show_quote(quote: Quote) -> None:
        print(_quote_line(quote), file=sys.stderr, flush=True)

    async with PayingClient(account) as client:
        exchange = await client.chat(
            args.url,
            args.model,
            args.prompt,
            stream=args.stream,
            max_tokens=args.max_tokens,
            on_text=on_text if streamed_text else None,
            on_quote=None if args.json else show_quote,
        )
    if args.json:
        print(json.dumps(_document(exchange), indent=2))
    else:
        if streamed_text and exchange.text:
            sys.stdout.write("\n")
        elif exchange.text:
            print(exchange.text)
        notes = []
        if exchange.settle is not None:
            notes += _receipt_lines(exchange)
        if exchange.error is not None:
            notes.append(f"error: {exchange.error}")
        for note in notes:
            print(note, file=sys.stderr)
    return 0 if exchange.status == 200 and exchange.error is None else 1


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    url = base_url(args.url)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {args.url!r}: must be an http:// or https:// URL")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ConfigError(f"--max-tokens {args.max_tokens}: must be at least 1")
    return asyncio.run(_pay(args))
