"""EIP-712 typed data the chain layer signs: EIP-3009 transfers and wallet proofs.

Two structures matter on chain:

- `TransferWithAuthorization` (EIP-3009), signed by a payer in the token's
  domain `{name, version, chainId, verifyingContract = token}`. It is what an
  x402 `exact` payment carries and what `MeshSettlement.settle` executes.
- `AgentWalletSet` (ERC-8004), signed by the NEW wallet of an agent in the
  identity registry's domain `{"ERC8004IdentityRegistry", "1", chainId,
  registry}`, proving the wallet consents to receive the agent's payouts.

Hashing and signing go through eth-account's `encode_typed_data`, the same
code path wallets use, so a digest here is the digest a contract recovers.
The typehashes are pinned as constants (from the spec sheets) and a unit test
checks them against the type strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

__all__ = [
    "AGENT_WALLET_SET_TYPEHASH",
    "AGENT_WALLET_SET_TYPES",
    "REGISTRY_DOMAIN_NAME",
    "REGISTRY_DOMAIN_VERSION",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "TRANSFER_WITH_AUTHORIZATION_TYPES",
    "Signature",
    "TransferAuthorization",
    "agent_wallet_set_digest",
    "agent_wallet_set_typed_data",
    "sign_agent_wallet_set",
    "sign_transfer_authorization",
    "transfer_authorization_digest",
    "transfer_authorization_typed_data",
]

TRANSFER_WITH_AUTHORIZATION_TYPEHASH: Final = bytes.fromhex(
    "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
)
AGENT_WALLET_SET_TYPEHASH: Final = bytes.fromhex(
    "678b53cd718d595370ab070ebf48edfdcd834beac116bf23e625fc7f4d5b7d32"
)
REGISTRY_DOMAIN_NAME: Final = "ERC8004IdentityRegistry"
REGISTRY_DOMAIN_VERSION: Final = "1"

TRANSFER_WITH_AUTHORIZATION_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
AGENT_WALLET_SET_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "AgentWalletSet": [
        {"name": "agentId", "type": "uint256"},
        {"name": "newWallet", "type": "address"},
        {"name": "owner", "type": "address"},
        {"name": "deadline", "type": "uint256"},
    ]
}
_DOMAIN_TYPE: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class TransferAuthorization:
    """One EIP-3009 `TransferWithAuthorization` message (amounts in atomic units)."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != 32:
            raise ValueError(f"nonce must be 32 bytes, got {len(self.nonce)}")
        if self.value < 0 or self.valid_after < 0 or self.valid_before < 0:
            raise ValueError("value, valid_after and valid_before must not be negative")


@dataclass(frozen=True)
class Signature:
    """A 65-byte secp256k1 signature and its parts (v is 27 or 28)."""

    v: int
    r: bytes
    s: bytes

    @property
    def packed(self) -> bytes:
        """`r || s || v`, the 65-byte form `bytes signature` parameters take."""
        return self.r + self.s + bytes([self.v])


def _domain(name: str, version: str, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def transfer_authorization_typed_data(
    auth: TransferAuthorization,
    *,
    token_name: str,
    token_version: str,
    chain_id: int,
    token: str,
) -> dict[str, Any]:
    """The full EIP-712 message (as wallets take it) for an EIP-3009 transfer."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, **TRANSFER_WITH_AUTHORIZATION_TYPES},
        "primaryType": "TransferWithAuthorization",
        "domain": _domain(token_name, token_version, chain_id, token),
        "message": {
            "from": to_checksum_address(auth.from_),
            "to": to_checksum_address(auth.to),
            "value": auth.value,
            "validAfter": auth.valid_after,
            "validBefore": auth.valid_before,
            "nonce": auth.nonce,
        },
    }


def agent_wallet_set_typed_data(
    *,
    agent_id: int,
    new_wallet: str,
    owner: str,
    deadline: int,
    chain_id: int,
    registry: str,
) -> dict[str, Any]:
    """The full EIP-712 message for an ERC-8004 `setAgentWallet` proof.

    `owner` is `ownerOf(agentId)`, not whoever sends the transaction.
    """
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, **AGENT_WALLET_SET_TYPES},
        "primaryType": "AgentWalletSet",
        "domain": _domain(REGISTRY_DOMAIN_NAME, REGISTRY_DOMAIN_VERSION, chain_id, registry),
        "message": {
            "agentId": agent_id,
            "newWallet": to_checksum_address(new_wallet),
            "owner": to_checksum_address(owner),
            "deadline": deadline,
        },
    }


def _signable(typed_data: dict[str, Any]) -> SignableMessage:
    return encode_typed_data(full_message=typed_data)


def _digest(typed_data: dict[str, Any]) -> bytes:
    # EIP-191 version 0x01: keccak(0x19 0x01 || domainSeparator || hashStruct(message)).
    message = _signable(typed_data)
    return keccak(b"\x19" + message.version + message.header + message.body)


def _sign(private_key: bytes, typed_data: dict[str, Any]) -> Signature:
    signed = Account.sign_message(_signable(typed_data), private_key)
    return Signature(
        v=int(signed.v),
        r=int(signed.r).to_bytes(32, "big"),
        s=int(signed.s).to_bytes(32, "big"),
    )


def transfer_authorization_digest(
    auth: TransferAuthorization,
    *,
    token_name: str,
    token_version: str,
    chain_id: int,
    token: str,
) -> bytes:
    """The 32-byte digest the token recovers the payer's address from."""
    return _digest(
        transfer_authorization_typed_data(
            auth, token_name=token_name, token_version=token_version, chain_id=chain_id, token=token
        )
    )


def sign_transfer_authorization(
    private_key: bytes,
    auth: TransferAuthorization,
    *,
    token_name: str,
    token_version: str,
    chain_id: int,
    token: str,
) -> Signature:
    """Sign an EIP-3009 transfer as its payer (`auth.from_` must be the key's address)."""
    return _sign(
        private_key,
        transfer_authorization_typed_data(
            auth, token_name=token_name, token_version=token_version, chain_id=chain_id, token=token
        ),
    )


def agent_wallet_set_digest(
    *, agent_id: int, new_wallet: str, owner: str, deadline: int, chain_id: int, registry: str
) -> bytes:
    """The 32-byte digest the registry recovers the new wallet from."""
    return _digest(
        agent_wallet_set_typed_data(
            agent_id=agent_id,
            new_wallet=new_wallet,
            owner=owner,
            deadline=deadline,
            chain_id=chain_id,
            registry=registry,
        )
    )


def sign_agent_wallet_set(
    wallet_private_key: bytes,
    *,
    agent_id: int,
    owner: str,
    deadline: int,
    chain_id: int,
    registry: str,
) -> Signature:
    """The new wallet's consent to become `agent_id`'s wallet, valid until `deadline`."""
    new_wallet = Account.from_key(wallet_private_key).address
    return _sign(
        wallet_private_key,
        agent_wallet_set_typed_data(
            agent_id=agent_id,
            new_wallet=new_wallet,
            owner=owner,
            deadline=deadline,
            chain_id=chain_id,
            registry=registry,
        ),
    )
