"""Local verification of an x402 `exact` EIP-3009 payment: no network.

The checks and their order follow the reference verifier (x402 SDK 2.25,
`mechanisms/evm/exact/facilitator.py`), with its reason strings, after the
SDK server's own rule that the payload's `accepted` equals the requirements
recomputed for this request. The reference verifier's chain calls are
replaced by local state:

- signature: recovered with libsecp256k1 through coincurve directly (a
  missing coincurve fails at import instead of silently falling back to
  ~5 ms pure Python; eth-keys' wrappers around the same call cost as much
  again as the recovery itself); EOA signatures only, because EIP-1271 and
  ERC-6492 wallets need a chain call; high-s refused as the token does;
- "asset has code": checked once at start, when the token domain is read;
- the `eth_call` simulation (nonce unused, balance): the journal's atomic
  claim and the payer's cached balance minus its unsettled exposure, which
  the edge passes in and the journal re-checks in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from coincurve import PublicKey
from eth_hash.auto import keccak
from eth_keys.backends.coincurve import CoinCurveECCBackend
from eth_keys.main import KeyAPI
from x402.schemas import PaymentPayload, PaymentRequirements

from mesh_x402.core.headers import DecodedPayment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.requirements import SCHEME, v1_network

__all__ = [
    "KEYS",
    "MIN_VALIDITY_SECONDS",
    "SECP256K1_HALF_N",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "Reason",
    "VerifiedPayment",
    "VerifyResult",
    "checksum_address",
    "eip3009_digest",
    "recover_address",
    "recover_signer",
    "verify_payment",
]

# Pinned to libsecp256k1: never the pure-Python fallback (~50x slower).
KEYS: Final = KeyAPI(CoinCurveECCBackend())
MIN_VALIDITY_SECONDS: Final = 6
SECP256K1_HALF_N: Final = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: Final = bytes.fromhex(
    "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
)
_DOMAIN_TYPEHASH: Final = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


class Reason:
    """Stable refusal reasons; the x402 SDK's strings where it has one."""

    UNSUPPORTED_SCHEME: Final = "unsupported_scheme"
    NETWORK_MISMATCH: Final = "network_mismatch"
    INVALID_PAYMENT_REQUIREMENTS: Final = "invalid_payment_requirements"
    MISSING_EIP712_DOMAIN: Final = "missing_eip712_domain"
    RECIPIENT_MISMATCH: Final = "invalid_exact_evm_payload_recipient_mismatch"
    VALUE_MISMATCH: Final = "invalid_exact_evm_payload_authorization_value_mismatch"
    VALID_BEFORE: Final = "invalid_exact_evm_payload_authorization_valid_before"
    VALID_AFTER: Final = "invalid_exact_evm_payload_authorization_valid_after"
    SIGNATURE: Final = "invalid_exact_evm_payload_signature"
    NONCE_USED: Final = "invalid_exact_evm_nonce_already_used"
    INSUFFICIENT_BALANCE: Final = "invalid_exact_evm_insufficient_balance"


@dataclass(frozen=True)
class VerifiedPayment:
    """The facts of a verified authorization, parsed, for the journal.

    `payer` is `authorization.from` as the client spelt it (any case): the
    signature recovers to that address.
    """

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify_payment`: refusals are values, not exceptions.

    Attributes:
        ok: the payment passed every local check.
        reason: the refusal reason when not ok.
        message: a human-readable detail naming the mismatch.
        payer: the authorization's `from`.
        payment: the parsed authorization when ok.
    """

    ok: bool
    reason: str | None
    message: str | None
    payer: str
    payment: VerifiedPayment | None = None


@lru_cache(maxsize=16)
def _domain_separator(token: TokenDomain) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(token.name.encode("utf-8"))
        + keccak(token.version.encode("utf-8"))
        + token.chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(token.address[2:])
    )


def eip3009_digest(
    token: TokenDomain,
    *,
    payer: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    """The EIP-712 digest of a `TransferWithAuthorization` in the token's domain.

    Hand-encoded (every field is a static 32-byte word) because it is on the
    hot path; a unit test pins it to the SDK's `hash_eip3009_authorization`.
    """
    struct_hash = keccak(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + bytes(12)
        + bytes.fromhex(payer[2:])
        + bytes(12)
        + bytes.fromhex(to[2:])
        + value.to_bytes(32, "big")
        + valid_after.to_bytes(32, "big")
        + valid_before.to_bytes(32, "big")
        + nonce
    )
    return keccak(b"\x19\x01" + _domain_separator(token) + struct_hash)


def recover_signer(digest: bytes, signature: bytes) -> str | None:
    """The checksummed address that signed `digest`, or None for a bad signature
    (the rules of `recover_address`)."""
    raw = recover_address(digest, signature)
    return None if raw is None else checksum_address(raw)


def recover_address(digest: bytes, signature: bytes) -> bytes | None:
    """The 20-byte address that signed `digest`, or None for a bad signature.

    Only 65-byte (r, s, v) EOA signatures; v 27/28 or 0/1; s in the lower
    half of the curve order, as the token's ecrecover requires.
    """
    if len(signature) != 65:
        return None
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1) or int.from_bytes(signature[32:64], "big") > SECP256K1_HALF_N:
        return None
    try:
        # Refuses r or s of zero or not below the curve order, as ecrecover does.
        public_key = PublicKey.from_signature_and_message(
            signature[:64] + bytes((v,)), digest, hasher=None
        )
    except ValueError:
        return None
    address: bytes = keccak(public_key.format(compressed=False)[1:])[12:]
    return address


def checksum_address(raw: bytes) -> str:
    """The EIP-55 mixed-case spelling of a 20-byte address."""
    lower = raw.hex()
    hashed = int.from_bytes(keccak(lower.encode("ascii")), "big")
    # Upper-case each letter whose nibble in the hash of the lower-case hex is 8 or more.
    return "0x" + "".join(
        char.upper() if (hashed >> (255 - 4 * i)) & 1 else char for i, char in enumerate(lower)
    )


def _refuse(reason: str, payer: str, message: str) -> VerifyResult:
    return VerifyResult(ok=False, reason=reason, message=message, payer=payer)


def _accepted_mismatch(accepted: PaymentRequirements, ours: PaymentRequirements) -> str | None:
    """The first field where the client's `accepted` differs from our terms."""
    if accepted.amount != ours.amount:
        return "amount"
    if accepted.asset.lower() != ours.asset.lower():
        return "asset"
    if accepted.pay_to.lower() != ours.pay_to.lower():
        return "payTo"
    if accepted.max_timeout_seconds != ours.max_timeout_seconds:
        return "maxTimeoutSeconds"
    offered = accepted.extra or {}
    for key, value in (ours.extra or {}).items():
        if offered.get(key) != value:
            return f"extra.{key}"
    return None


def verify_payment(  # noqa: PLR0911, PLR0912 - one branch per reference-verifier step, in order
    decoded: DecodedPayment,
    requirements: PaymentRequirements,
    token: TokenDomain,
    *,
    now: int,
    spendable: int | None,
) -> VerifyResult:
    """Check a decoded payment against the requirements recomputed for this request.

    Args:
        decoded: the payment header, decoded and shape-checked.
        requirements: our v2 requirements for this request (the quote).
        token: the token's EIP-712 domain.
        now: unix time in seconds.
        spendable: the payer's cached balance minus its unsettled exposure,
            or None to skip the balance check (no balance known).

    Returns:
        ok with the parsed payment, or the first failing check's reason.
    """
    auth = decoded.exact.authorization
    payer = auth.from_
    envelope = decoded.envelope
    if isinstance(envelope, PaymentPayload):
        scheme, network = envelope.accepted.scheme, envelope.accepted.network
    else:
        scheme, network = envelope.scheme, envelope.network
    if scheme != SCHEME:
        return _refuse(Reason.UNSUPPORTED_SCHEME, payer, f"scheme {scheme!r} is not {SCHEME!r}")
    networks = {requirements.network}
    if decoded.version == 1:
        networks.add(v1_network(token.chain_id))
    if network not in networks:
        return _refuse(
            Reason.NETWORK_MISMATCH, payer, f"network {network!r} is not {requirements.network!r}"
        )
    if isinstance(envelope, PaymentPayload):
        field = _accepted_mismatch(envelope.accepted, requirements)
        if field is not None:
            return _refuse(
                Reason.INVALID_PAYMENT_REQUIREMENTS,
                payer,
                f"accepted.{field} differs from this request's requirements",
            )
    extra = requirements.extra or {}
    if "name" not in extra or "version" not in extra:
        return _refuse(Reason.MISSING_EIP712_DOMAIN, payer, "requirements lack extra.name/version")
    if auth.to.lower() != requirements.pay_to.lower():
        return _refuse(Reason.RECIPIENT_MISMATCH, payer, "authorization.to is not payTo")
    value = int(auth.value)
    if value != int(requirements.amount):
        return _refuse(
            Reason.VALUE_MISMATCH,
            payer,
            f"authorization.value {value} is not the amount {requirements.amount}",
        )
    valid_before = int(auth.valid_before)
    if valid_before < now + MIN_VALIDITY_SECONDS:
        return _refuse(Reason.VALID_BEFORE, payer, "authorization expires too soon or has expired")
    valid_after = int(auth.valid_after)
    if valid_after > now:
        return _refuse(Reason.VALID_AFTER, payer, "authorization is not valid yet")
    signature = bytes.fromhex(decoded.exact.signature[2:])
    nonce = bytes.fromhex(auth.nonce[2:])
    digest = eip3009_digest(
        token,
        payer=payer,
        to=auth.to,
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
    )
    signer = recover_address(digest, signature)
    if signer is None or signer != bytes.fromhex(payer[2:]):
        return _refuse(Reason.SIGNATURE, payer, "signature does not recover to authorization.from")
    if spendable is not None and spendable < value:
        return _refuse(
            Reason.INSUFFICIENT_BALANCE, payer, "balance minus unsettled payments is too low"
        )
    return VerifyResult(
        ok=True,
        reason=None,
        message=None,
        payer=payer,
        payment=VerifiedPayment(
            payer=payer,
            to=auth.to,
            value=value,
            valid_after=valid_after,
            valid_before=valid_before,
            nonce=auth.nonce.lower(),
            signature=decoded.exact.signature,
        ),
    )
