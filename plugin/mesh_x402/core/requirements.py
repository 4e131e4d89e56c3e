"""x402 payment requirements for a quote, in the v2 and v1 wire shapes.

The official client (2.25) takes v2 requirements only from the
`PAYMENT-REQUIRED` header, needs `amount` as a string, `maxTimeoutSeconds`
as an integer and `extra.name`/`extra.version`; it signs `validBefore = now
+ maxTimeoutSeconds`. v1 clients read the JSON body, with the amount named
`maxAmountRequired` and the resource inside each requirement.
"""

from __future__ import annotations

from typing import Any, Final

from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from mesh_x402.core.money import format_atomic
from mesh_x402.core.ports import TokenDomain

__all__ = [
    "MAX_TIMEOUT_SECONDS",
    "SCHEME",
    "build_payment_required",
    "build_requirements",
    "build_v1_body",
    "v1_network",
]

SCHEME: Final = "exact"
# The client signs validBefore = now + this. The verifier wants validBefore >=
# now + 6 s, and a long generation must still be settleable afterwards, so it
# is far above both; 5 minutes also bounds how long an unserved authorization
# stays usable by anyone who saw it.
MAX_TIMEOUT_SECONDS: Final = 300

_V1_NAMES: Final = {chain_id: name for name, chain_id in V1_NETWORK_CHAIN_IDS.items()}


def v1_network(chain_id: int) -> str:
    """The v1 network name: the legacy name when the SDK knows one, else CAIP-2.

    Local chains (31337) have no legacy name; v1 clients that only know the
    legacy names cannot sign for them anyway, so the CAIP-2 form is the honest
    answer and is what this gate accepts from a v1 payload.
    """
    return _V1_NAMES.get(chain_id, f"eip155:{chain_id}")


def build_requirements(
    token: TokenDomain,
    pay_to: str,
    amount: int,
    *,
    max_timeout_seconds: int = MAX_TIMEOUT_SECONDS,
) -> PaymentRequirements:
    """The v2 requirements for paying `amount` of the token to `pay_to` (EIP-3009)."""
    return PaymentRequirements(
        scheme=SCHEME,
        network=token.network,
        asset=token.address,
        amount=format_atomic(amount),
        pay_to=pay_to,
        max_timeout_seconds=max_timeout_seconds,
        extra={"name": token.name, "version": token.version},
    )


def build_payment_required(
    requirements: PaymentRequirements,
    resource_url: str,
    *,
    description: str | None = None,
    error: str | None = None,
) -> PaymentRequired:
    """The v2 `PaymentRequired` object for the `PAYMENT-REQUIRED` header."""
    return PaymentRequired(
        error=error,
        resource=ResourceInfo(
            url=resource_url, description=description, mime_type="application/json"
        ),
        accepts=[requirements],
    )


def build_v1_body(
    requirements: PaymentRequirements,
    resource_url: str,
    *,
    description: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The v1 JSON 402 body `{x402Version: 1, error, accepts}` for the same terms."""
    chain_id = int(requirements.network.split(":", 1)[1])
    v1 = PaymentRequiredV1(
        error=error if error is not None else "payment required",
        accepts=[
            PaymentRequirementsV1(
                scheme=requirements.scheme,
                network=v1_network(chain_id),
                max_amount_required=requirements.amount,
                resource=resource_url,
                description=description or "",
                mime_type="application/json",
                pay_to=requirements.pay_to,
                max_timeout_seconds=requirements.max_timeout_seconds,
                asset=requirements.asset,
                extra=dict(requirements.extra),
            )
        ],
    )
    body: dict[str, Any] = v1.model_dump(by_alias=True, exclude_none=True)
    return body
