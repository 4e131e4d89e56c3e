"""The usage receipt: one EIP-712 `Receipt` per paid exchange.

A receipt says what the payer authorized, what the exchange used, what it
cost, who is credited and what goes back to the payer. The entry node signs
it with its node key; the nodes credited in it countersign the same digest
(a `ReceiptAck`). The digest is the `receiptHash` that `MeshSettlement.settle`
records and emits with every credit and refund, so an on-chain event points
back at exactly one signed receipt.

Domain: `{name "MeshSettlement", version "1", chainId, verifyingContract =
the settlement contract}`. Types (the order of fields is part of the hash)::

    Receipt(address payer,bytes32 nonce,uint256 value,string requestId,
            string model,uint256 promptTokens,uint256 completionTokens,
            uint256 priceVersion,uint256 timestamp,uint256 charge,
            uint256 refund,uint256 entryAgentId,Credit[] credits,string policy)
    Credit(uint256 agentId,uint256 amount)

Hand-encoded here (every field is one word or a keccak of one): the core stays
free of web3, and a unit test pins the digest to eth-account's
`encode_typed_data`, the code path wallets and contracts agree with.

Invariants a `Receipt` refuses to be built without: charge <= value,
refund == value - charge, the credits sum to the charge, each agent credited
once. Amounts are int atomic units.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from coincurve import PrivateKey
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.verify import _domain_separator, recover_signer

__all__ = [
    "CREDIT_TYPE",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "RECEIPT_TYPE",
    "RECEIPT_TYPES",
    "Credit",
    "Receipt",
    "ReceiptDomain",
    "receipt_digest",
    "recover_receipt_signer",
    "sign_digest",
    "sign_receipt",
]

DOMAIN_NAME: Final = "MeshSettlement"
DOMAIN_VERSION: Final = "1"
CREDIT_TYPE: Final = "Credit(uint256 agentId,uint256 amount)"
RECEIPT_TYPE: Final = (
    "Receipt(address payer,bytes32 nonce,uint256 value,string requestId,string model,"
    "uint256 promptTokens,uint256 completionTokens,uint256 priceVersion,uint256 timestamp,"
    "uint256 charge,uint256 refund,uint256 entryAgentId,Credit[] credits,string policy)"
)
RECEIPT_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Receipt": [
        {"name": "payer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
        {"name": "value", "type": "uint256"},
        {"name": "requestId", "type": "string"},
        {"name": "model", "type": "string"},
        {"name": "promptTokens", "type": "uint256"},
        {"name": "completionTokens", "type": "uint256"},
        {"name": "priceVersion", "type": "uint256"},
        {"name": "timestamp", "type": "uint256"},
        {"name": "charge", "type": "uint256"},
        {"name": "refund", "type": "uint256"},
        {"name": "entryAgentId", "type": "uint256"},
        {"name": "credits", "type": "Credit[]"},
        {"name": "policy", "type": "string"},
    ],
    "Credit": [
        {"name": "agentId", "type": "uint256"},
        {"name": "amount", "type": "uint256"},
    ],
}
"""The same types in the shape eth-account's `encode_typed_data` takes (tests, wallets)."""

_CREDIT_TYPEHASH: Final = keccak(CREDIT_TYPE.encode())
# EIP-712 appends referenced struct types, sorted by name, to the primary type.
_RECEIPT_TYPEHASH: Final = keccak((RECEIPT_TYPE + CREDIT_TYPE).encode())
_ADDRESS: Final = re.compile(r"^0x[0-9a-fA-F]{40}$")
_UINT256_MAX: Final = 2**256 - 1
# Text fields are bounded so a receipt always fits a channel message.
_MAX_TEXT: Final = 256
_MAX_CREDITS: Final = 64


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _check_uint(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT256_MAX:
        raise ValueError(f"receipt {name} must be an integer from 0 to 2**256-1, got {value!r}")


@dataclass(frozen=True)
class Credit:
    """Atomic units credited to one ERC-8004 agent out of one payment."""

    agent_id: int
    amount: int

    def __post_init__(self) -> None:
        _check_uint("credit agentId", self.agent_id)
        _check_uint("credit amount", self.amount)


@dataclass(frozen=True)
class ReceiptDomain:
    """The EIP-712 domain: the chain and the settlement contract that records receipts."""

    chain_id: int
    settlement: str

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.settlement):
            raise ValueError(f"settlement must be a 0x address, got {self.settlement!r}")

    @property
    def separator(self) -> bytes:
        # The same separator as any {name, version, chainId, verifyingContract} domain.
        return _domain_separator(
            TokenDomain(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, self.settlement.lower())
        )


@dataclass(frozen=True)
class Receipt:
    """One paid exchange, as signed by the entry node.

    Attributes:
        payer: the EIP-3009 authorization's `from` (0x address, kept EIP-55 checksummed).
        nonce: the authorization's 32-byte nonce.
        value: the authorized value (the quoted maximum).
        request_id: the exchange's x-request-id.
        model: the model asked for.
        prompt_tokens / completion_tokens: the metered usage.
        price_version: the price sheet version the charge was computed with.
        timestamp: unix seconds when the charge was fixed.
        charge: what the exchange cost (<= value).
        refund: value - charge, returned to the payer at settlement.
        entry_agent_id: the entry node's agentId (its signer calls settle).
        credits: who gets what; the amounts sum to `charge`.
        policy: the attribution policy that produced the credits.
    """

    payer: str
    nonce: bytes
    value: int
    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    price_version: int
    timestamp: int
    charge: int
    refund: int
    entry_agent_id: int
    credits: tuple[Credit, ...]
    policy: str

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.payer):
            raise ValueError(f"receipt payer must be a 0x address, got {self.payer!r}")
        # One spelling (EIP-55), so receipts from the wire and the store compare equal.
        object.__setattr__(self, "payer", to_checksum_address(self.payer))
        if len(self.nonce) != 32:
            raise ValueError(f"receipt nonce must be 32 bytes, got {len(self.nonce)}")
        for name in ("value", "prompt_tokens", "completion_tokens", "price_version"):
            _check_uint(name, getattr(self, name))
        for name in ("timestamp", "charge", "refund", "entry_agent_id"):
            _check_uint(name, getattr(self, name))
        for name in ("request_id", "model", "policy"):
            if len(getattr(self, name).encode()) > _MAX_TEXT:
                raise ValueError(f"receipt {name} is over {_MAX_TEXT} bytes")
        if self.charge > self.value:
            raise ValueError(f"receipt charge {self.charge} exceeds the authorized {self.value}")
        if self.refund != self.value - self.charge:
            raise ValueError(
                f"receipt refund {self.refund} is not value - charge ({self.value - self.charge})"
            )
        if len(self.credits) > _MAX_CREDITS:
            raise ValueError(f"receipt has {len(self.credits)} credits, at most {_MAX_CREDITS}")
        credited = sum(credit.amount for credit in self.credits)
        if credited != self.charge:
            raise ValueError(f"receipt credits sum to {credited}, not the charge {self.charge}")
        agents = [credit.agent_id for credit in self.credits]
        if len(set(agents)) != len(agents):
            raise ValueError("receipt credits an agent more than once")

    def credit_of(self, agent_id: int) -> int:
        """What this receipt credits `agent_id` (0 when not credited)."""
        return sum(c.amount for c in self.credits if c.agent_id == agent_id)

    def to_json(self) -> dict[str, Any]:
        """The receipt as JSON: amounts as decimal strings, bytes as 0x hex."""
        return {
            "payer": self.payer,
            "nonce": "0x" + self.nonce.hex(),
            "value": str(self.value),
            "requestId": self.request_id,
            "model": self.model,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "priceVersion": self.price_version,
            "timestamp": self.timestamp,
            "charge": str(self.charge),
            "refund": str(self.refund),
            "entryAgentId": str(self.entry_agent_id),
            "credits": [
                {"agentId": str(c.agent_id), "amount": str(c.amount)} for c in self.credits
            ],
            "policy": self.policy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        """Parse `to_json`'s output.

        Raises:
            ValueError: a field is missing or malformed (named in the message).
        """
        try:
            credits: Sequence[Mapping[str, Any]] = data["credits"]
            return cls(
                payer=str(data["payer"]),
                nonce=bytes.fromhex(str(data["nonce"]).removeprefix("0x")),
                value=int(data["value"]),
                request_id=str(data["requestId"]),
                model=str(data["model"]),
                prompt_tokens=int(data["promptTokens"]),
                completion_tokens=int(data["completionTokens"]),
                price_version=int(data["priceVersion"]),
                timestamp=int(data["timestamp"]),
                charge=int(data["charge"]),
                refund=int(data["refund"]),
                entry_agent_id=int(data["entryAgentId"]),
                credits=tuple(
                    Credit(agent_id=int(c["agentId"]), amount=int(c["amount"])) for c in credits
                ),
                policy=str(data["policy"]),
            )
        except KeyError as exc:
            raise ValueError(f"receipt field {exc.args[0]!r} is missing") from None
        except TypeError as exc:
            raise ValueError(f"receipt is malformed: {exc}") from None

    def struct_hash(self) -> bytes:
        """EIP-712 `hashStruct(Receipt)`."""
        credits = b"".join(
            keccak(_CREDIT_TYPEHASH + _word(c.agent_id) + _word(c.amount)) for c in self.credits
        )
        return keccak(
            _RECEIPT_TYPEHASH
            + bytes(12)
            + bytes.fromhex(self.payer[2:])
            + self.nonce
            + _word(self.value)
            + keccak(self.request_id.encode())
            + keccak(self.model.encode())
            + _word(self.prompt_tokens)
            + _word(self.completion_tokens)
            + _word(self.price_version)
            + _word(self.timestamp)
            + _word(self.charge)
            + _word(self.refund)
            + _word(self.entry_agent_id)
            + keccak(credits)
            + keccak(self.policy.encode())
        )


def receipt_digest(receipt: Receipt, domain: ReceiptDomain) -> bytes:
    """The 32-byte EIP-712 digest: what is signed, and the on-chain `receiptHash`."""
    return keccak(b"\x19\x01" + domain.separator + receipt.struct_hash())


def sign_digest(secret: bytes, digest: bytes) -> bytes:
    """Sign a 32-byte digest; 65 bytes `r || s || v`, v 27/28, low s (as ecrecover wants).

    libsecp256k1 through coincurve, RFC 6979 nonces (the same bytes eth-keys
    gives), with the key object kept: making one derives the public key, a
    second curve multiplication per signature (a receipt is signed on every
    paid request's path: 278 us through eth-keys here, 53 us so).
    """
    signature: bytes = _signing_key(secret).sign_recoverable(digest, hasher=None)
    return signature[:64] + bytes((signature[64] + 27,))


@functools.lru_cache(maxsize=8)
def _signing_key(secret: bytes) -> PrivateKey:
    return PrivateKey(secret)


def sign_receipt(secret: bytes, receipt: Receipt, domain: ReceiptDomain) -> bytes:
    """The entry node's signature (or a participant's countersignature) of a receipt."""
    return sign_digest(secret, receipt_digest(receipt, domain))


def recover_receipt_signer(receipt: Receipt, domain: ReceiptDomain, signature: bytes) -> str | None:
    """The checksummed address that signed this receipt, or None for a bad signature."""
    return recover_signer(receipt_digest(receipt, domain), signature)
