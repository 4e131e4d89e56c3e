"""What a settle status means for a journalled payment: settled, failed, or try again.

`MeshSettlement.settle` answers one status per item (contracts/README.md).
The reconciler turns each into one of three outcomes, from a table, with a
stable snake_case reason for the journal:

- SETTLED -> settled: the money is pulled and credited; the token's nonce
  makes it the only time.
- NONCE_USED -> settled if this contract's `PaymentSettled` logs show it
  settled this (payer, nonce) under the receipt's hash (an earlier
  transaction, or this one for a duplicate); else failed
  `authorization_used_or_canceled`: someone else executed the authorization
  (its money sits in the contract as surplus nobody can credit) or the payer
  canceled it. Final either way: a nonce is never unused again.
- BAD_SPLIT -> failed `bad_split`: the receipt's figures do not add up, and
  sending the same item again cannot change that.
- UNKNOWN_AGENT -> failed `unknown_agent`: a credited agentId is not in the
  registry this contract uses.
- NOT_ENTRY_SIGNER -> retry (`not_entry_signer`): this node's own
  registration is incomplete (signer metadata or wallet); the operator can
  fix it while the authorization is valid, and each retry is an `eth_call`
  preview that costs no gas.
- AUTHORIZATION_FAILED -> see below: the token refused the transfer for
  another reason than its nonce.

AUTHORIZATION_FAILED is split by what the chain shows now: past
`validBefore` is `authorization_expired`; before `validAfter` is a retry
(`authorization_not_yet_valid`: it will become valid); a nonce used or
canceled since the contract answered is `authorization_used_or_canceled`; a
payer holding less than the value is `payer_insufficient_funds` (final, as
DESIGN.md asks: the edge accepted it against a balance the payer then
moved); anything else is a bad signature, `authorization_failed`.

Any retry turns into `authorization_expired` once the window has passed:
nothing is retried forever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh_x402.chain.bindings import SettleStatus

__all__ = ["AuthorizationFacts", "Outcome", "OutcomeKind", "classify"]


class OutcomeKind(enum.Enum):
    """What happens to the payment after a settle status."""

    SETTLED = "settled"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True)
class Outcome:
    """One payment's fate and the stable reason recorded with it."""

    kind: OutcomeKind
    reason: str


@dataclass(frozen=True)
class AuthorizationFacts:
    """What the chain says about an authorization now (read only when a status needs it).

    Attributes:
        now: the latest block's timestamp (the token compares against chain time).
        valid_after: the authorization's `validAfter`.
        valid_before: the authorization's `validBefore`.
        value: the authorized value.
        payer_balance: the payer's token balance, if read.
        nonce_used: the token's `authorizationState(from, nonce)`, if read.
        settlement_tx: the transaction whose `PaymentSettled` log shows the
            settlement contract settled this (payer, nonce) under the receipt's
            hash, if the logs were read and hold one.
    """

    now: int
    valid_after: int
    valid_before: int
    value: int
    payer_balance: int | None = None
    nonce_used: bool | None = None
    settlement_tx: str | None = None

    @property
    def expired(self) -> bool:
        return self.now >= self.valid_before

    @property
    def not_yet_valid(self) -> bool:
        return self.now <= self.valid_after


_SETTLED = Outcome(OutcomeKind.SETTLED, "settled")
_USED_OR_CANCELED = Outcome(OutcomeKind.FAILED, "authorization_used_or_canceled")
_FINAL: dict[SettleStatus, str] = {
    SettleStatus.BAD_SPLIT: "bad_split",
    SettleStatus.UNKNOWN_AGENT: "unknown_agent",
}


def _authorization(facts: AuthorizationFacts) -> Outcome:
    if facts.expired:
        return Outcome(OutcomeKind.FAILED, "authorization_expired")
    if facts.not_yet_valid:
        return Outcome(OutcomeKind.RETRY, "authorization_not_yet_valid")
    if facts.nonce_used:
        return _USED_OR_CANCELED
    if facts.payer_balance is not None and facts.payer_balance < facts.value:
        return Outcome(OutcomeKind.FAILED, "payer_insufficient_funds")
    return Outcome(OutcomeKind.FAILED, "authorization_failed")


def classify(status: SettleStatus, facts: AuthorizationFacts) -> Outcome:
    """The outcome of one item's settle status (the table in the module docstring)."""
    if status is SettleStatus.SETTLED:
        return _SETTLED
    if status is SettleStatus.NONCE_USED:
        return _SETTLED if facts.settlement_tx is not None else _USED_OR_CANCELED
    if status in _FINAL:
        return Outcome(OutcomeKind.FAILED, _FINAL[status])
    if status is SettleStatus.NOT_ENTRY_SIGNER:
        if facts.expired:
            return Outcome(OutcomeKind.FAILED, "authorization_expired")
        return Outcome(OutcomeKind.RETRY, "not_entry_signer")
    return _authorization(facts)
