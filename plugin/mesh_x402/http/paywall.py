"""The paywall: x402 on the paid routes, between the HTTP edge and the core.

One paid request, in order:

1. Body: at most `gateway.max_body_bytes` (413), a JSON object (400).
2. Quote: the maximum charge for this request (400 bad field, 404 unpriced
   model), and the x402 requirements for it.
3. Payment: none -> 402 with `PAYMENT-REQUIRED` (v2) and the v1 JSON body;
   malformed -> 400; refused by the core -> 402 with the reason.
4. Claim: the journal records the payment as `accepted` in one atomic
   statement that also refuses a replayed nonce and an overdrawn payer. The
   statement runs on the event loop (about 0.1 ms, no fsync) and the request
   goes upstream at once, while the writer thread fsyncs the journal (its
   `sync`). The response head waits for that sync, so no client hears of a
   claim a power loss could still undo; a failed sync ends the request
   without an answer and releases the payment.
5. Forward and relay: SSE streams through chunk by chunk; a JSON answer is
   held until complete so its head can carry the charge.
6. Outcome: a complete 2xx makes the payment `chargeable` at the usage
   price (capped at the quote). An upstream error or timeout, or a client
   that leaves before any token, `releases` it: that authorization is never
   settled, and the client is told so in the payment response header. A
   client that leaves a stream after tokens flowed pays for what was sent.
   The `chargeable` mark is committed on the event loop before the answer
   (a crash of the process after the answer keeps it) and synced by the
   writer thread right after, off the answer's path: only a power loss in
   that fraction of a millisecond can lose it, and then the payment is
   released at the next start, so the payer is never charged for it (the
   node loses that one charge). Waiting for that fsync cost each answer
   about 0.7 ms on the development VMs.

7. Settlement. Mode `deferred` (the default): `transaction` is "" and
   `extra.settlement` is "deferred"; the receipt id in `extra` names the
   receipt at `GET /x402/receipts/{id}`, which shows the transaction once the
   reconciler's loop settled it. Mode `immediate`, non-streamed answers: the
   held JSON answer is released only after `ctx.settler` settled the payment
   on chain (confirmations waited for, in a worker thread), and what the
   client gets depends on the journal's outcome:

   - settled: the upstream's status and body, `PAYMENT-RESPONSE` with
     `success` true, `transaction` the settle transaction's hash,
     `extra.settlement` "immediate";
   - failed for good (the payer moved its funds, the authorization expired
     or was used elsewhere): 402, a JSON error body (never the completion),
     `PAYMENT-RESPONSE` with `success` false, `amount` "0", `errorReason`
     the x402 reason (`invalid_exact_evm_insufficient_balance`,
     `..._authorization_valid_before`, `..._nonce_already_used`, else
     `transaction_failed`) and `extra.journalReason` the journal's; this
     node charges nothing (an authorization someone else executed first
     moved its money anyway, to the settlement contract, which never
     credits it: contracts/README.md);
   - undecided (RPC unreachable, an item that must wait): the body is
     released as in mode `deferred` (`extra.settlement` "deferred"), since
     the payment stays chargeable and the loop will settle it: a payer is
     never charged for a body it did not get.

   Streamed answers in mode `immediate` are settled as in mode `deferred`:
   their head (and the payment response in it) leaves before the charge is
   known. A client that disconnects while its payment is being settled does
   not stop the settlement (the authorization was served).

Journal fsyncs run on one writer thread (with the rarer writes: releases),
so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from x402.schemas import PaymentRequirements, SettleResponse

from mesh_x402.core.headers import (
    DecodedPayment,
    PaymentHeaderError,
    decode_payment_header,
    encode_payment_required,
    encode_payment_response,
)
from mesh_x402.core.metering import billable_usage, loads_bounded
from mesh_x402.core.ports import Settlement
from mesh_x402.core.pricing import PriceRefusal, Quote, charge_for_usage, quote_request
from mesh_x402.core.requirements import (
    build_payment_required,
    build_requirements,
    build_v1_body,
    v1_network,
)
from mesh_x402.core.verify import Reason, VerifiedPayment, verify_payment
from mesh_x402.http.activity import Activity
from mesh_x402.http.context import GateContext
from mesh_x402.http.server import Message, Receive, Scope, Send
from mesh_x402.http.upstream import UpstreamError, UpstreamResponse
from mesh_x402.log import Event, get_logger
from mesh_x402.store.journal import ClaimOutcome, NewPayment

__all__ = ["Paywall", "json_response"]

_log = get_logger("http")
_T = TypeVar("_T")

# Clients in browsers may read these headers only when they are exposed.
_EXPOSE: Final = (
    b"access-control-expose-headers",
    b"PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE",
)
# An upstream error body is relayed, up to this size.
_MAX_ERROR_BODY: Final = 256 * 1024
# The journal's final settlement reasons (chain/outcomes.py) as the x402 SDK names them.
_SETTLE_REASONS: Final = {
    "payer_insufficient_funds": Reason.INSUFFICIENT_BALANCE,
    "authorization_expired": Reason.VALID_BEFORE,
    "authorization_used_or_canceled": Reason.NONCE_USED,
}


async def json_response(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole JSON response."""
    content = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _error(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


class _ClientGoneError(Exception):
    """The client disconnected before its request body was read."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it exceeds `limit` (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _soon(fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Call `fn` at the event loop's next turn: after the current request step
    has written what it writes (its upstream request, its answer) and yields.
    For work on no answer's path: a log line costs ~0.1 ms in a request's flow.
    """
    asyncio.get_running_loop().call_soon(functools.partial(fn, *args, **kwargs))


def _after_sync(synced: asyncio.Future[None], send: Send) -> Send:
    """`send`, holding the response head until the claim is on disk: until
    then a power loss would undo the claim, so the client must hear nothing.
    A failed sync raises here, and the request ends without an answer.
    """

    async def send_after_sync(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.shield(synced)
        await send(message)

    return send_after_sync


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass
class _Exchange:
    """One accepted payment on its way through the upstream."""

    receipt_id: str
    request_id: str
    payment: VerifiedPayment
    decoded: DecodedPayment
    quote: Quote
    body: dict[str, Any]
    synced: asyncio.Future[None] | None = None  # the claim's sync, once accepted
    reply: UpstreamResponse | None = None
    head_sent: bool = False
    finalizing: bool = False


class Paywall:
    """Serves the paid routes (`POST /v1/chat/completions`, `POST /v1/completions`)."""

    def __init__(self, ctx: GateContext) -> None:
        self._ctx = ctx
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self.activity = Activity()

    def close(self) -> None:
        """Stop the journal writer thread after the writes already queued."""
        self._writer.shutdown(wait=True)

    async def _journal(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        # Shielded: a cancelled request must not leave a write half-known;
        # the write finishes on the writer thread either way.
        return await asyncio.shield(
            loop.run_in_executor(self._writer, functools.partial(fn, *args, **kwargs))
        )

    def _network(self, decoded: DecodedPayment) -> str:
        token = self._ctx.token
        return token.network if decoded.version == 2 else v1_network(token.chain_id)

    async def _payment_required(
        self,
        send: Send,
        requirements: PaymentRequirements,
        resource: str,
        *,
        reason: str,
        message: str,
        status: int = 402,
    ) -> None:
        header = encode_payment_required(
            build_payment_required(requirements, resource, description=message, error=reason)
        )
        headers = [(b"payment-required", header.encode()), _EXPOSE]
        if status == 402:
            body: dict[str, Any] = build_v1_body(
                requirements, resource, description=message, error=reason
            )
        else:
            body = _error(message, reason)
        await json_response(send, status, body, headers)

    async def _read_json(
        self, receive: Receive, send: Send, headers: dict[str, str]
    ) -> tuple[dict[str, Any], int] | None:
        """The request's JSON object and its size, or None once an error was answered."""
        limit = self._ctx.config.gateway.max_body_bytes
        declared = headers.get("content-length", "")
        raw: bytes | None = None
        if not (declared.isdigit() and int(declared) > limit):
            try:
                raw = await _read_body(receive, limit)
            except _ClientGoneError:
                return None
        if raw is None:
            await json_response(
                send, 413, _error(f"request body exceeds {limit} bytes", "body_too_large")
            )
            return None
        try:
            # Bounded: with web3 loaded, a deeply nested body crashes CPython's decoder.
            body = loads_bounded(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            await json_response(
                send, 400, _error("request body is not a JSON object", "invalid_json")
            )
            return None
        return body, len(raw)

    async def _check_payment(
        self,
        send: Send,
        value: str,
        requirements: PaymentRequirements,
        resource: str,
    ) -> tuple[DecodedPayment, VerifiedPayment, int] | None:
        """Decode and verify a payment header; None once a refusal was answered.

        Returns:
            The decoded header, the verified payment, and the payer's balance.
        """
        ctx = self._ctx
        try:
            decoded = decode_payment_header(value)
        except PaymentHeaderError as exc:
            _log.info(Event.PAYMENT_MALFORMED, reason=exc.reason, problem=str(exc))
            await self._payment_required(
                send, requirements, resource, reason=exc.reason, message=str(exc), status=exc.status
            )
            return None
        result = verify_payment(
            decoded, requirements, ctx.token, now=int(ctx.clock()), spendable=None
        )
        if not result.ok or result.payment is None:
            await self._refuse(
                send, requirements, resource,
                reason=result.reason, message=result.message, payer=result.payer,
            )  # fmt: skip
            return None
        payment = result.payment
        balance = ctx.balances.cached_balance(payment.payer)
        refresh = getattr(ctx.balances, "refresh", None)
        if balance is None and refresh is not None:
            balance = await refresh(payment.payer)
        if balance is None:
            await self._refuse(
                send, requirements, resource, reason=Reason.INSUFFICIENT_BALANCE,
                message="the payer's balance is not known yet", payer=payment.payer,
            )  # fmt: skip
            return None
        return decoded, payment, balance

    async def serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Answer one request on a paid route (`path` is the route, prefix removed)."""
        self.activity.started()
        try:
            await self._serve(scope, receive, send, path)
        finally:
            self.activity.finished()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        ctx = self._ctx
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        request = await self._read_json(receive, send, headers)
        if request is None:
            return
        body, size = request
        quote = quote_request(ctx.config.pricing, body, size)
        if isinstance(quote, PriceRefusal):
            await json_response(send, quote.status, _error(quote.message, quote.reason))
            return
        requirements = build_requirements(ctx.token, ctx.pay_to, quote.amount)
        resource = f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}{path}"
        header = headers.get("payment-signature", headers.get("x-payment"))
        if header is None:
            _log.info(Event.PAYMENT_REQUIRED, path=path, model=quote.model, amount=quote.amount)
            await self._payment_required(
                send, requirements, resource, reason="payment_required", message="payment required"
            )
            return
        checked = await self._check_payment(send, header, requirements, resource)
        if checked is None:
            return
        decoded, payment, balance = checked
        exchange = _Exchange(
            receipt_id=uuid.uuid4().hex,
            request_id=str(uuid.uuid4()),
            payment=payment,
            decoded=decoded,
            quote=quote,
            body=body,
        )
        # On the loop: one statement, no fsync (the journal's `sync` follows below).
        outcome = ctx.journal.claim(
            self._new_payment(exchange, requirements), spendable=balance, durable=False
        )
        if outcome is not ClaimOutcome.ACCEPTED:
            # RESERVED: a verified peer is serving this authorization already.
            replayed = outcome in (ClaimOutcome.REPLAYED, ClaimOutcome.RESERVED)
            await self._refuse(
                send,
                requirements,
                resource,
                reason=Reason.NONCE_USED if replayed else Reason.INSUFFICIENT_BALANCE,
                message="this authorization was already used"
                if replayed
                else "balance minus unsettled payments does not cover the amount",
                payer=payment.payer,
            )
            return
        synced = exchange.synced = self._sync()
        _soon(
            _log.info,
            Event.PAYMENT_ACCEPTED,
            receipt_id=exchange.receipt_id,
            request_id=exchange.request_id,
            payer=payment.payer,
            amount=payment.value,
            model=quote.model,
        )
        if ctx.receipts is not None:
            # Before forwarding: peers refuse this authorization from now on.
            await ctx.receipts.reserve(
                payer=payment.payer,
                nonce=payment.nonce,
                value=payment.value,
                valid_before=payment.valid_before,
            )
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{path}?{query}" if query else path
        try:
            await self._exchange(exchange, target, headers, receive, _after_sync(synced, send))
        finally:
            # A failed sync is this request's real error, whatever it broke after.
            try:
                await asyncio.shield(synced)
            except OSError:
                await self._release_unsynced(exchange)
                raise

    def _sync(self) -> asyncio.Future[None]:
        """The journal's `sync` on the writer thread."""
        return asyncio.get_running_loop().run_in_executor(self._writer, self._ctx.journal.sync)

    def _sync_later(self) -> None:
        """The journal's `sync` on the writer thread, awaited by nobody (a failure
        is logged), handed over once the current step's writes are out."""

        def sync() -> None:
            try:
                self._ctx.journal.sync()
            except OSError as exc:
                _log.error(Event.JOURNAL_SYNC_FAILED, error=str(exc))

        _soon(self._writer.submit, sync)

    async def _release_unsynced(self, exchange: _Exchange) -> None:
        """The claim never reached the disk and the client heard nothing: release it,
        so it is never settled (best effort: a restart releases it too)."""
        if exchange.finalizing:
            return
        try:
            await self._release(exchange, "journal_sync_failed")
        except (OSError, sqlite3.Error) as exc:
            _log.error(Event.JOURNAL_SYNC_FAILED, receipt_id=exchange.receipt_id, error=str(exc))

    async def _refuse(
        self,
        send: Send,
        requirements: PaymentRequirements,
        resource: str,
        *,
        reason: str | None,
        message: str | None,
        payer: str,
    ) -> None:
        _log.info(Event.PAYMENT_REFUSED, reason=reason, payer=payer)
        await self._payment_required(
            send,
            requirements,
            resource,
            reason=reason or "invalid_payload",
            message=message or "payment refused",
        )

    def _new_payment(self, exchange: _Exchange, requirements: PaymentRequirements) -> NewPayment:
        payment = exchange.payment
        return NewPayment(
            receipt_id=exchange.receipt_id,
            request_id=exchange.request_id,
            payer=payment.payer,
            nonce=payment.nonce,
            value=payment.value,
            valid_after=payment.valid_after,
            valid_before=payment.valid_before,
            signature=payment.signature,
            network=requirements.network,
            asset=requirements.asset,
            pay_to=requirements.pay_to,
            model=exchange.quote.model,
            x402_version=exchange.decoded.version,
        )

    async def _exchange(
        self,
        exchange: _Exchange,
        target: str,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> None:
        """Forward and relay, racing a client disconnect."""
        deliver = asyncio.ensure_future(self._deliver(exchange, target, headers, send))
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({deliver, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not deliver.done():
                deliver.cancel()
                await asyncio.gather(deliver, return_exceptions=True)
                await self._after_disconnect(exchange)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        if not deliver.cancelled():
            deliver.result()

    async def _after_disconnect(self, exchange: _Exchange) -> None:
        if exchange.finalizing:
            return
        reply = exchange.reply
        if reply is not None and reply.streamed and exchange.head_sent and reply.first_token_seen:
            await self._charge(exchange, reply)
        else:
            await self._release(exchange, "client_disconnected")

    async def _release(self, exchange: _Exchange, reason: str) -> None:
        exchange.finalizing = True
        await self._journal(self._ctx.journal.mark_released, exchange.receipt_id, reason=reason)
        _log.info(Event.PAYMENT_RELEASED, receipt_id=exchange.receipt_id, reason=reason)

    async def _charge(self, exchange: _Exchange, reply: UpstreamResponse) -> int:
        if exchange.synced is not None:
            # Done long ago unless the disk is slower than the model; a failed
            # sync raises: never charge a claim that is not on disk.
            await asyncio.shield(exchange.synced)
        exchange.finalizing = True
        quote = exchange.quote
        usage = billable_usage(
            reply.usage,
            request_body=exchange.body,
            completion_chars=reply.completion_chars,
            prompt_ceiling=quote.prompt_ceiling,
            completion_ceiling=quote.completion_ceiling,
        )
        charge = charge_for_usage(quote, usage.prompt_tokens, usage.completion_tokens)
        receipts = self._ctx.receipts
        if receipts is None:
            # On the loop, committed before the answer and synced just after it.
            self._ctx.journal.mark_chargeable(
                exchange.receipt_id,
                charge=charge,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                durable=False,
            )
            self._sync_later()
        else:
            # The chargeable state and the signed receipt commit together.
            payment = exchange.payment
            await asyncio.shield(
                receipts.charge(
                    exchange.receipt_id,
                    payer=payment.payer,
                    nonce=payment.nonce,
                    value=payment.value,
                    request_id=exchange.request_id,
                    model=quote.model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    charge=charge,
                )
            )
        _soon(
            _log.info,
            Event.PAYMENT_CHARGEABLE,
            receipt_id=exchange.receipt_id,
            charge=charge,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            estimated=reply.usage is None,
        )
        return charge

    def _settle_header(
        self,
        exchange: _Exchange,
        *,
        success: bool,
        amount: int | None,
        error_reason: str | None = None,
        error_message: str | None = None,
        pending: bool = False,
        settlement: str | None = None,
        transaction: str = "",
        extra_fields: dict[str, str] | None = None,
    ) -> tuple[bytes, bytes]:
        extra: dict[str, Any] = {
            "receiptId": exchange.receipt_id,
            "receiptUrl": f"/x402/receipts/{exchange.receipt_id}",
            "authorized": str(exchange.quote.amount),
            "settlement": settlement or ("deferred" if success else "released"),
            **(extra_fields or {}),
        }
        if pending:
            extra["charge"] = "pending"
        settle = SettleResponse(
            success=success,
            error_reason=error_reason,
            error_message=error_message,
            payer=exchange.payment.payer,
            transaction=transaction,
            network=self._network(exchange.decoded),
            amount=None if amount is None else str(amount),
            extra=extra,
        )
        name = b"payment-response" if exchange.decoded.version == 2 else b"x-payment-response"
        return name, encode_payment_response(settle).encode()

    async def _deliver(
        self, exchange: _Exchange, target: str, headers: dict[str, str], send: Send
    ) -> None:
        quote = exchange.quote
        body = exchange.body
        if quote.max_tokens_to_set is not None:
            body = {**body, "max_tokens": quote.max_tokens_to_set}
        try:
            reply = await self._ctx.upstream.forward(
                "POST", target, body, headers, exchange.request_id
            )
        except UpstreamError as exc:
            await self._upstream_failed(exchange, send, exc)
            return
        exchange.reply = reply
        try:
            if not reply.ok:
                await self._relay_error(exchange, reply, send)
            elif reply.streamed:
                await self._relay_stream(exchange, reply, send)
            else:
                await self._relay_json(exchange, reply, send)
        finally:
            await reply.aclose()

    async def _upstream_failed(self, exchange: _Exchange, send: Send, exc: UpstreamError) -> None:
        await self._release(exchange, exc.reason)
        status = 504 if exc.reason == "upstream_timeout" else 502
        await json_response(
            send,
            status,
            _error(f"{exc}; your payment was released, not charged", exc.reason, "upstream_error"),
            [
                self._settle_header(
                    exchange, success=False, amount=0, error_reason=exc.reason,
                    error_message="payment released: the upstream did not answer",
                ),
                _EXPOSE,
            ],
        )  # fmt: skip

    async def _relay_error(self, exchange: _Exchange, reply: UpstreamResponse, send: Send) -> None:
        content = bytearray()
        try:
            async for chunk in reply.body():
                content += chunk
                if len(content) > _MAX_ERROR_BODY:
                    break
        except UpstreamError:
            pass  # the status alone is the answer; the payment is released either way
        reason = "upstream_error"
        await self._release(exchange, f"{reason}_{reply.status}")
        payment_header = self._settle_header(
            exchange, success=False, amount=0, error_reason=reason,
            error_message=f"payment released: the upstream answered {reply.status}",
        )  # fmt: skip
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    *self._upstream_headers(reply),
                    (b"content-length", str(len(content)).encode()),
                    payment_header,
                    _EXPOSE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": bytes(content)})

    @staticmethod
    def _upstream_headers(reply: UpstreamResponse) -> list[tuple[bytes, bytes]]:
        return [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in reply.headers
            if name not in ("payment-response", "x-payment-response", "payment-required")
        ]

    async def _relay_json(self, exchange: _Exchange, reply: UpstreamResponse, send: Send) -> None:
        try:
            content = await reply.read()
        except UpstreamError as exc:
            await self._upstream_failed(exchange, send, exc)
            return
        charge = await self._charge(exchange, reply)
        payment_header = self._settle_header(exchange, success=True, amount=charge)
        settler = self._ctx.settler
        if settler is not None:
            # Shielded: a client that leaves now does not abandon a transaction
            # that may already be on its way (the journal records its outcome).
            outcome = await asyncio.shield(settler.settle_now(exchange.receipt_id))
            if not outcome.ok and not outcome.deferred:
                await self._settle_failed(exchange, outcome, send)
                return
            if outcome.ok:
                _log.info(
                    Event.PAYMENT_SETTLED, receipt_id=exchange.receipt_id, tx=outcome.transaction
                )
                payment_header = self._settle_header(
                    exchange,
                    success=True,
                    amount=charge,
                    settlement="immediate",
                    transaction=outcome.transaction,
                )
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    *self._upstream_headers(reply),
                    (b"content-length", str(len(content)).encode()),
                    payment_header,
                    _EXPOSE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _settle_failed(self, exchange: _Exchange, outcome: Settlement, send: Send) -> None:
        """402 for a payment whose immediate settlement failed for good: no completion."""
        journal_reason = outcome.reason or "failed"
        reason = _SETTLE_REASONS.get(journal_reason, "transaction_failed")
        message = f"settlement failed ({journal_reason}); this node charged you nothing"
        _log.info(
            Event.PAYMENT_SETTLE_FAILED, receipt_id=exchange.receipt_id, reason=journal_reason
        )
        await json_response(
            send,
            402,
            _error(message, reason, "payment_error"),
            [
                self._settle_header(
                    exchange,
                    success=False,
                    amount=0,
                    error_reason=reason,
                    error_message=message,
                    settlement="failed",
                    transaction=outcome.transaction,
                    extra_fields={"journalReason": journal_reason},
                ),
                _EXPOSE,
            ],
        )

    async def _relay_stream(self, exchange: _Exchange, reply: UpstreamResponse, send: Send) -> None:
        # The head goes out before the charge is known, so it carries the
        # authorized maximum as pending; the receipt has the final charge.
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    *self._upstream_headers(reply),
                    self._settle_header(exchange, success=True, amount=None, pending=True),
                    _EXPOSE,
                ],
            }
        )
        exchange.head_sent = True
        try:
            async for chunk in reply.body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            if reply.first_token_seen:
                await self._charge(exchange, reply)
            else:
                await self._release(exchange, exc.reason)
            await send({"type": "http.response.body", "body": b""})
            return
        await self._charge(exchange, reply)
        await send({"type": "http.response.body", "body": b""})
