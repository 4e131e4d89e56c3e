"""A minimal x402 `exact` payer: signs EIP-3009 authorizations into payment headers.

The official SDK client pays v2 requirements, but its v1 client only signs
for networks with a legacy name, which local chains lack. This payer builds
either version's header from our requirements, and lets tests override any
field (a wrong `to`, an expired window, a foreign token) to exercise each
refusal. Pure: the time is passed in, the nonce may be.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402.schemas import PaymentRequirements

from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.requirements import v1_network

__all__ = ["encode_header", "sign_payment"]


def sign_payment(
    account: LocalAccount,
    requirements: PaymentRequirements,
    token: TokenDomain,
    *,
    now: int,
    version: int = 2,
    nonce: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The JSON payment payload paying `requirements` from `account`.

    Args:
        account: the payer's key.
        requirements: the server's v2 requirements (v1 reuses its terms).
        token: the token domain to sign in (override fields to sign wrongly).
        now: unix time; validAfter = now - 600 and validBefore = now +
            maxTimeoutSeconds, like the SDK's v1 client.
        version: 1 or 2.
        nonce: 0x-prefixed 32-byte hex; random when omitted.
        overrides: authorization fields to replace before signing (`to`,
            `value`, `validAfter`, `validBefore`, `from`), or `signature`
            (replaced after signing), `accepted` (v2 dict), `scheme`, `network`.

    Returns:
        The payload as a JSON-ready dict (camelCase, as on the wire).
    """
    authorization: dict[str, Any] = {
        "from": account.address,
        "to": requirements.pay_to,
        "value": requirements.amount,
        "validAfter": str(now - 600),
        "validBefore": str(now + requirements.max_timeout_seconds),
        "nonce": nonce or "0x" + secrets.token_hex(32),
    }
    for key in ("from", "to", "value", "validAfter", "validBefore"):
        if key in overrides:
            authorization[key] = overrides.pop(key)
    signed = Account.sign_typed_data(
        account.key,
        domain_data={
            "name": token.name,
            "version": token.version,
            "chainId": token.chain_id,
            "verifyingContract": token.address,
        },
        message_types={
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ]
        },
        message_data={
            "from": authorization["from"],
            "to": authorization["to"],
            "value": int(authorization["value"]),
            "validAfter": int(authorization["validAfter"]),
            "validBefore": int(authorization["validBefore"]),
            "nonce": bytes.fromhex(authorization["nonce"][2:]),
        },
    )
    inner = {
        "authorization": authorization,
        "signature": overrides.pop("signature", "0x" + bytes(signed.signature).hex()),
    }
    if version == 1:
        payload: dict[str, Any] = {
            "x402Version": 1,
            "scheme": overrides.pop("scheme", requirements.scheme),
            "network": overrides.pop("network", v1_network(token.chain_id)),
            "payload": inner,
        }
    else:
        accepted = requirements.model_dump(by_alias=True)
        accepted.update(overrides.pop("accepted", {}))
        payload = {"x402Version": 2, "accepted": accepted, "payload": inner}
    if overrides:
        raise TypeError(f"unknown overrides: {sorted(overrides)}")
    return payload


def encode_header(payload: dict[str, Any]) -> str:
    """Standard base64 of the payload's JSON, the header value."""
    return base64.b64encode(json.dumps(payload).encode()).decode()
