"""Settle statuses to journal outcomes, from the table in chain/outcomes.py."""

from __future__ import annotations

import pytest
from mesh_x402.chain.bindings import SettleStatus
from mesh_x402.chain.outcomes import AuthorizationFacts, Outcome, OutcomeKind, classify

S = SettleStatus
SETTLED, FAILED, RETRY = OutcomeKind.SETTLED, OutcomeKind.FAILED, OutcomeKind.RETRY


def facts(now: int = 500, **overrides: object) -> AuthorizationFacts:
    base: dict[str, object] = {
        "now": now,
        "valid_after": 100,
        "valid_before": 1000,
        "value": 50,
        "payer_balance": 1_000,
        "nonce_used": False,
    }
    return AuthorizationFacts(**{**base, **overrides})  # type: ignore[arg-type]


TABLE = [
    # status, facts, expected outcome
    (S.SETTLED, facts(), Outcome(SETTLED, "settled")),
    # NONCE_USED: settled only when this contract's logs show it settled (payer, nonce),
    # whatever the window; else someone else executed it or the payer canceled it.
    (S.NONCE_USED, facts(nonce_used=True, settlement_tx="0xabc"), Outcome(SETTLED, "settled")),
    (S.NONCE_USED, facts(now=5_000, settlement_tx="0xabc"), Outcome(SETTLED, "settled")),
    (S.NONCE_USED, facts(nonce_used=True), Outcome(FAILED, "authorization_used_or_canceled")),
    (S.NONCE_USED, facts(now=5_000), Outcome(FAILED, "authorization_used_or_canceled")),
    (S.NONCE_USED, facts(now=100), Outcome(FAILED, "authorization_used_or_canceled")),
    (S.BAD_SPLIT, facts(), Outcome(FAILED, "bad_split")),
    (S.UNKNOWN_AGENT, facts(), Outcome(FAILED, "unknown_agent")),
    (S.NOT_ENTRY_SIGNER, facts(), Outcome(RETRY, "not_entry_signer")),
    (S.NOT_ENTRY_SIGNER, facts(now=1000), Outcome(FAILED, "authorization_expired")),
    (S.AUTHORIZATION_FAILED, facts(now=1000), Outcome(FAILED, "authorization_expired")),
    (S.AUTHORIZATION_FAILED, facts(now=100), Outcome(RETRY, "authorization_not_yet_valid")),
    (
        S.AUTHORIZATION_FAILED,
        facts(nonce_used=True),
        Outcome(FAILED, "authorization_used_or_canceled"),
    ),
    (S.AUTHORIZATION_FAILED, facts(payer_balance=49), Outcome(FAILED, "payer_insufficient_funds")),
    (S.AUTHORIZATION_FAILED, facts(payer_balance=50), Outcome(FAILED, "authorization_failed")),
    (S.AUTHORIZATION_FAILED, facts(payer_balance=None), Outcome(FAILED, "authorization_failed")),
    # Expiry decides before anything else: an expired, underfunded payment is expired.
    (
        S.AUTHORIZATION_FAILED,
        facts(now=2000, payer_balance=0, nonce_used=True),
        Outcome(FAILED, "authorization_expired"),
    ),
]


@pytest.mark.parametrize(("status", "known", "expected"), TABLE)
def test_classify(status: SettleStatus, known: AuthorizationFacts, expected: Outcome) -> None:
    """Each status and chain fact maps to the documented outcome and reason."""
    assert classify(status, known) == expected


def test_every_status_is_covered() -> None:
    """No contract status falls through the table."""
    assert {row[0] for row in TABLE} == set(SettleStatus)


def test_no_retry_outlives_the_authorization() -> None:
    """Whatever the status, an expired authorization is never retried."""
    for status in SettleStatus:
        assert classify(status, facts(now=10**9)).kind is not RETRY
