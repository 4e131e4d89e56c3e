"""Logging: structlog to stderr, JSON lines unless stderr is a terminal.

mesh-llm sends a plugin's stdout to /dev/null and keeps its stderr, so every
log line goes to stderr. Event names are stable, dotted and listed here;
values travel in keyword fields. A redaction processor drops anything that
looks like a secret (keys, signatures, payment headers) whatever the caller
passed, so a careless call site cannot leak one.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

__all__ = [
    "REDACTED",
    "configure",
    "get_logger",
    "redact_secrets",
]

REDACTED: Final = "[redacted]"

# Field names whose values never reach a log line. Matching is by substring
# on the lower-cased name, so `private_key`, `payment_signature` and
# `x_payment` are all covered.
_SECRET_MARKERS: Final = (
    "private_key",
    "privatekey",
    "secret",
    "signature",
    "payment-signature",
    "x-payment",
    "x_payment",
    "authorization",
    "mnemonic",
    "password",
)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every secret-looking field with a marker."""
    for key in list(event_dict):
        if _is_secret(key):
            event_dict[key] = REDACTED
    return event_dict


@functools.lru_cache(maxsize=1024)
def _is_secret(key: str) -> bool:
    # Cached: a process logs a few dozen distinct keys, each checked on every line.
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog for a plugin process.

    Args:
        level: the lowest level that is written.
        json: JSON lines when true, a console renderer when false; by default
            JSON unless stderr is a terminal.
    """
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(subsystem: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to one subsystem name (`host`, `http`, `chain`, ...)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(subsystem=subsystem)
    return logger


class Event:
    """Stable event names. Dashboards and tests match on these strings."""

    # host link
    HOST_CONNECTED: Final = "host.connected"
    HOST_INITIALIZED: Final = "host.initialized"
    HOST_DISCONNECTED: Final = "host.disconnected"
    HOST_BAD_FRAME: Final = "host.bad_frame"
    HOST_UNKNOWN_REQUEST: Final = "host.unknown_request"
    HOST_IGNORED: Final = "host.ignored"
    HOST_HANDLER_FAILED: Final = "host.handler_failed"
    HOST_WRITE_FAILED: Final = "host.write_failed"
    STREAM_OPENED: Final = "stream.opened"
    STREAM_REFUSED: Final = "stream.refused"
    MESH_EVENT: Final = "mesh.event"
    MESH_VIEW_RESTORED: Final = "mesh.view_restored"
    MESH_VIEW_UNREADABLE: Final = "mesh.view_unreadable"
    CHANNEL_RECEIVED: Final = "channel.received"
    CHANNEL_DROPPED: Final = "channel.dropped"
    CHANNEL_SENT: Final = "channel.sent"
    CHANNEL_RECEIVER_FAILED: Final = "channel.receiver_failed"
    # process
    SERVE_STARTED: Final = "serve.started"
    SERVE_STOPPED: Final = "serve.stopped"
    SERVE_FAILED: Final = "serve.failed"
    HTTP_LISTENING: Final = "http.listening"
    HTTP_HEAD_TOO_LARGE: Final = "http.head_too_large"
    HTTP_HEAD_REFUSED: Final = "http.request_head_refused"
    JOURNAL_SYNC_FAILED: Final = "journal.sync_failed"
    JOURNAL_CHECKPOINT_FAILED: Final = "journal.checkpoint_failed"
    HTTP_SERVER_ERROR: Final = "http.server_error"
    HTTP_GATEWAY_UNAVAILABLE: Final = "http.gateway_unavailable"
    # payments (the x402 gate)
    PAYMENT_REQUIRED: Final = "payment.required"
    PAYMENT_MALFORMED: Final = "payment.malformed"
    PAYMENT_REFUSED: Final = "payment.refused"
    PAYMENT_ACCEPTED: Final = "payment.accepted"
    PAYMENT_CHARGEABLE: Final = "payment.chargeable"
    PAYMENT_RELEASED: Final = "payment.released"
    PAYMENT_SETTLED: Final = "payment.settled"
    PAYMENT_SETTLE_FAILED: Final = "payment.settle_failed"
    BALANCE_REFRESH_FAILED: Final = "balance.refresh_failed"
    # receipts and the x402.v1 gossip
    GOSSIP_STARTED: Final = "gossip.started"
    GOSSIP_DISABLED: Final = "gossip.disabled"
    GOSSIP_DROPPED: Final = "gossip.dropped"
    GOSSIP_HELD: Final = "gossip.held"
    IDENTITY_CLAIMED: Final = "identity.claimed"
    IDENTITY_VERIFIED: Final = "identity.verified"
    IDENTITY_REFUSED: Final = "identity.refused"
    IDENTITY_CHECK_UNAVAILABLE: Final = "identity.check_unavailable"
    NONCE_RESERVED: Final = "nonce.reserved"
    NONCE_RESERVATION_CONFLICT: Final = "nonce.reservation_conflict"
    RECEIPT_SIGNED: Final = "receipt.signed"
    RECEIPT_UNSIGNABLE: Final = "receipt.unsignable"
    RECEIPT_RECEIVED: Final = "receipt.received"
    RECEIPT_DISPUTED: Final = "receipt.disputed"
    RECEIPT_ACKED: Final = "receipt.acked"
    SETTLEMENT_NOTICED: Final = "settlement.noticed"
    # chain
    CHAIN_TX_SENT: Final = "chain.tx_sent"
    CHAIN_TX_CONFIRMED: Final = "chain.tx_confirmed"
    CHAIN_UNAVAILABLE: Final = "chain.unavailable"
    # settlement (reconciler, operator API)
    SETTLEMENT_BATCH_SENT: Final = "settlement.batch_sent"
    SETTLEMENT_BATCH_CONFIRMED: Final = "settlement.batch_confirmed"
    SETTLEMENT_BATCH_FAILED: Final = "settlement.batch_failed"
    SETTLEMENT_REBROADCAST: Final = "settlement.rebroadcast"
    SETTLEMENT_CONFLICT: Final = "settlement.conflict"
    SETTLEMENT_SHORTFALL: Final = "settlement.shortfall"
    SETTLEMENT_DEFERRED: Final = "settlement.deferred"
    RECONCILE_RETRY: Final = "reconcile.retry"
    RECONCILE_FAILED: Final = "reconcile.failed"
    BLACKBOARD_POSTED: Final = "blackboard.posted"
    BLACKBOARD_SKIPPED: Final = "blackboard.skipped"
    OPERATOR_LISTENING: Final = "operator.listening"
    OPERATOR_STOPPED: Final = "operator.stopped"
    OPERATOR_CHAIN_UNAVAILABLE: Final = "operator.chain_unavailable"
