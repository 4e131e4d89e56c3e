"""x402 HTTP headers: decoding payments strictly, encoding answers.

A payment header is attacker-controlled text. Decoding checks, in order:
size (16 KiB), standard base64 (the SDK's alphabet; URL-safe is refused),
UTF-8 JSON object, a known `x402Version`, the SDK's pydantic model, and the
EIP-3009 inner payload's shape (addresses, decimal strings, a 32-byte nonce,
hex signature). Each failure raises `PaymentHeaderError` naming the problem
and carrying the status the edge answers: 400 for a malformed payload (x402
spec), 402 for a well-formed one of an unsupported version.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from x402.http.utils import encode_payment_required_header, encode_payment_response_header
from x402.schemas import PaymentPayload, PaymentRequired, SettleResponse
from x402.schemas.v1 import PaymentPayloadV1

from mesh_x402.core.metering import loads_bounded
from mesh_x402.core.money import MAX_UINT256

__all__ = [
    "MAX_HEADER_BYTES",
    "DecodedPayment",
    "ExactAuthorization",
    "ExactEvmPayload",
    "PaymentHeaderError",
    "decode_payment_header",
    "encode_payment_required",
    "encode_payment_response",
]

MAX_HEADER_BYTES: Final = 16 * 1024

_ADDRESS: Final = r"^0x[0-9a-fA-F]{40}$"
_UINT: Final = r"^[0-9]{1,78}$"


class PaymentHeaderError(ValueError):
    """A payment header that cannot be used.

    Attributes:
        reason: an x402 error reason (`invalid_payload`, `invalid_x402_version`).
        status: the HTTP status to answer (400 malformed, 402 refused).
    """

    def __init__(self, message: str, *, reason: str = "invalid_payload", status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", populate_by_name=True)


class ExactAuthorization(_Strict):
    """EIP-3009 `TransferWithAuthorization` fields as the client sent them."""

    from_: str = Field(alias="from", pattern=_ADDRESS)
    to: str = Field(pattern=_ADDRESS)
    value: str = Field(pattern=_UINT)
    valid_after: str = Field(alias="validAfter", pattern=_UINT)
    valid_before: str = Field(alias="validBefore", pattern=_UINT)
    nonce: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")

    @field_validator("value", "valid_after", "valid_before")
    @classmethod
    def _fits_uint256(cls, text: str) -> str:
        # 78 digits reach past 2**256; the token (and the EIP-712 digest) cannot hold that.
        if int(text) > MAX_UINT256:
            raise ValueError("does not fit in uint256")
        return text


class ExactEvmPayload(_Strict):
    """The `payload` of an `exact` EVM payment: authorization plus signature."""

    authorization: ExactAuthorization
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2})*$", max_length=2 + 2 * 4096)


@dataclass(frozen=True)
class DecodedPayment:
    """A decoded payment header.

    Attributes:
        version: 1 or 2.
        envelope: the SDK's payload model for that version.
        exact: the validated EIP-3009 inner payload.
    """

    version: int
    envelope: PaymentPayload | PaymentPayloadV1
    exact: ExactEvmPayload


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def decode_payment_header(value: str) -> DecodedPayment:
    """Decode a `PAYMENT-SIGNATURE` or `X-PAYMENT` header value.

    Raises:
        PaymentHeaderError: the value is oversized, not base64, not a JSON
            object, of an unknown version, or not a well-formed exact payment.
    """
    if len(value) > MAX_HEADER_BYTES:
        raise PaymentHeaderError(f"payment header exceeds {MAX_HEADER_BYTES} bytes")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PaymentHeaderError("payment header is not standard base64") from None
    try:
        # Bounded nesting: with web3 loaded, deep JSON crashes CPython's decoder.
        data = loads_bounded(raw.decode("utf-8").encode())
    except (UnicodeDecodeError, ValueError):
        raise PaymentHeaderError("payment header is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise PaymentHeaderError("payment header JSON is not an object")
    version = data.get("x402Version")
    if isinstance(version, bool) or version not in (1, 2):
        raise PaymentHeaderError(
            f"x402Version {version!r} is not supported (1 or 2)",
            reason="invalid_x402_version",
            status=402,
        )
    try:
        envelope: PaymentPayload | PaymentPayloadV1 = (
            PaymentPayloadV1.model_validate(data)
            if version == 1
            else PaymentPayload.model_validate(data)
        )
        exact = ExactEvmPayload.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PaymentHeaderError(f"payment payload: {_describe(exc)}") from None
    return DecodedPayment(version=version, envelope=envelope, exact=exact)


def encode_payment_required(payment_required: PaymentRequired) -> str:
    """The `PAYMENT-REQUIRED` header value (standard base64 of the JSON)."""
    encoded: str = encode_payment_required_header(payment_required)
    return encoded


def encode_payment_response(settle: SettleResponse) -> str:
    """The `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE` header value."""
    encoded: str = encode_payment_response_header(settle)
    return encoded
