"""What the payment core needs from the outside world, as small Protocols.

The core never reads the clock, the chain or the disk itself. The HTTP edge
gathers these values through the Protocols below and passes plain values in,
so `verify` and `pricing` stay pure and deterministic under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BalanceRefresher",
    "BalanceView",
    "Clock",
    "ExposureView",
    "ReceiptIssuer",
    "Settlement",
    "Settler",
    "TokenDomain",
]

Clock = Callable[[], float]
"""Returns the current unix time in seconds; `time.time` in production."""


@dataclass(frozen=True)
class TokenDomain:
    """The EIP-3009 token's EIP-712 domain, read from the chain once at start.

    `name` and `version` differ between chains ("USD Coin" on mainnets, "USDC"
    on Base Sepolia), so they are read from the token, never assumed.

    Attributes:
        name: the token's `name()`.
        version: the token's `version()`.
        chain_id: the chain the token lives on.
        address: the token contract (checksummed), the EIP-712 verifyingContract.
    """

    name: str
    version: str
    chain_id: int
    address: str

    @property
    def network(self) -> str:
        """The CAIP-2 network name x402 v2 uses, e.g. `eip155:31337`."""
        return f"eip155:{self.chain_id}"


class BalanceView(Protocol):
    """The payers' token balances as last read from the chain.

    Reads come from a cache refreshed in the background, so checking a payment
    never waits on the chain.
    """

    def cached_balance(self, payer: str) -> int | None:
        """The payer's last known balance in atomic units, or None if never read."""
        ...


class BalanceRefresher(BalanceView, Protocol):
    """A balance view that can also read one payer's balance now (optional capability).

    The edge uses it only for a payer it has never seen, so the first payment
    of a new payer costs one chain read and every later one none.
    """

    async def refresh(self, payer: str) -> int | None:
        """Read the payer's balance from the chain; None if the chain did not answer."""
        ...


class ExposureView(Protocol):
    """What a payer has authorized here that has not reached the chain yet."""

    def unsettled_exposure(self, payer: str) -> int:
        """Sum of the authorized values of this payer's accepted, unsettled payments.

        Those authorizations will each pull their full value when settled, so
        they already spend the cached balance.
        """
        ...


@dataclass(frozen=True)
class Settlement:
    """The outcome of settling one payment on-chain right away.

    Exactly one of three: settled (`ok`), failed for good (`reason` set:
    the authorization will never pay, so nothing is charged), or undecided
    (`deferred`: the chain could not answer now, or the item must wait; the
    payment stays chargeable and the reconciler's loop settles it later).

    Attributes:
        ok: whether the transfer landed.
        transaction: the transaction hash ("" when nothing was sent).
        reason: the journal's failure reason when it failed for good.
        deferred: neither settled nor failed now; settled later in a batch.
    """

    ok: bool
    transaction: str
    reason: str | None = None
    deferred: bool = False


class ReceiptIssuer(Protocol):
    """Signs usage receipts and tells the mesh about payments (optional capability).

    A node in a paid mesh has one (mesh/receipting.py); a node without an
    ERC-8004 identity or a mesh has none, and the gate only journals.
    """

    async def reserve(self, *, payer: str, nonce: str, value: int, valid_before: int) -> None:
        """Flood a signed reservation of (payer, nonce) before the request is served,
        so a peer that sees the same authorization afterwards refuses it."""
        ...

    async def charge(
        self,
        payment_id: str,
        *,
        payer: str,
        nonce: str,
        value: int,
        request_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        charge: int,
    ) -> None:
        """Mark the journalled payment `chargeable` and keep its signed receipt, in
        one transaction, then send the receipt to the nodes it credits.

        Raises:
            InvalidTransitionError: as `Journal.mark_chargeable`; nothing is written.
        """
        ...


class Settler(Protocol):
    """Settles one chargeable payment now (settlement mode `immediate`).

    The gate calls it after a non-streamed response is complete and charged
    (its receipt signed) and before releasing it; streamed responses are
    settled by the reconciler's loop, as in mode `deferred`.
    """

    async def settle_now(self, payment_id: str) -> Settlement:
        """Settle the journalled payment `payment_id` for its receipt's charge
        (refunding the rest) and wait for the configured confirmations."""
        ...
