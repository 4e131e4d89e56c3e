"""EIP-712 digests and signatures match what the contracts recover."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from mesh_x402.chain import eip712
from mesh_x402.chain.eip712 import (
    AGENT_WALLET_SET_TYPEHASH,
    TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    TransferAuthorization,
)
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.types import ExactEIP3009Authorization

PAYER_KEY = bytes.fromhex("11" * 32)
WALLET_KEY = bytes.fromhex("22" * 32)
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAY_TO = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
OWNER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def make_auth(**overrides: object) -> TransferAuthorization:
    fields: dict[str, object] = {
        "from_": Account.from_key(PAYER_KEY).address,
        "to": PAY_TO,
        "value": 1_234_567,
        "valid_after": 0,
        "valid_before": 1_900_000_000,
        "nonce": bytes(range(32)),
    }
    fields.update(overrides)
    return TransferAuthorization(**fields)  # type: ignore[arg-type]


def domain_separator(name: str, version: str, chain_id: int, contract: str) -> bytes:
    """EIP-712 domain separator computed by hand (independent of eth-account)."""
    typehash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [typehash, keccak(name.encode()), keccak(version.encode()), chain_id, contract],
        )
    )


def recover(digest: bytes, signature: eip712.Signature) -> str:
    sig = keys.Signature(
        vrs=(
            signature.v - 27,
            int.from_bytes(signature.r, "big"),
            int.from_bytes(signature.s, "big"),
        )
    )
    return sig.recover_public_key_from_msg_hash(digest).to_checksum_address()


class TestTypehashes:
    def test_transfer_typehash_matches_type_string(self) -> None:
        """The pinned EIP-3009 typehash is the keccak of its canonical type string."""
        assert (
            keccak(
                b"TransferWithAuthorization(address from,address to,uint256 value,"
                b"uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            )
            == TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        )

    def test_agent_wallet_typehash_matches_type_string(self) -> None:
        """The pinned ERC-8004 typehash is the keccak of its canonical type string."""
        assert (
            keccak(
                b"AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
            )
            == AGENT_WALLET_SET_TYPEHASH
        )


class TestTransferAuthorization:
    def test_digest_matches_hand_computed_vector(self) -> None:
        """The digest is 0x1901 || domain separator || hashStruct, from the pinned typehash."""
        auth = make_auth()
        struct_hash = keccak(
            encode(
                ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32"],
                [
                    TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
                    auth.from_,
                    auth.to,
                    auth.value,
                    auth.valid_after,
                    auth.valid_before,
                    auth.nonce,
                ],
            )
        )
        expected = keccak(
            b"\x19\x01" + domain_separator("USD Coin", "2", 31337, TOKEN) + struct_hash
        )
        got = eip712.transfer_authorization_digest(
            auth, token_name="USD Coin", token_version="2", chain_id=31337, token=TOKEN
        )
        assert got == expected

    def test_digest_matches_x402_sdk(self) -> None:
        """The x402 SDK's own verifier hashes the same authorization to the same digest."""
        auth = make_auth(value=10**6, valid_after=1_700_000_000)
        sdk = hash_eip3009_authorization(
            ExactEIP3009Authorization(
                from_address=auth.from_,
                to=auth.to,
                value=str(auth.value),
                valid_after=str(auth.valid_after),
                valid_before=str(auth.valid_before),
                nonce="0x" + auth.nonce.hex(),
            ),
            8453,
            TOKEN,
            "USDC",
            "2",
        )
        ours = eip712.transfer_authorization_digest(
            auth, token_name="USDC", token_version="2", chain_id=8453, token=TOKEN
        )
        assert ours == sdk

    def test_domain_fields_change_the_digest(self) -> None:
        """A signature for one chain, token or version is useless on another."""
        auth = make_auth()
        base = {"token_name": "USD Coin", "token_version": "2", "chain_id": 31337, "token": TOKEN}
        digests = {
            eip712.transfer_authorization_digest(auth, **{**base, **change})  # type: ignore[arg-type]
            for change in (
                {},
                {"chain_id": 8453},
                {"token_version": "1"},
                {"token_name": "USDC"},
                {"token": PAY_TO},
            )
        }
        assert len(digests) == 5

    def test_signature_recovers_payer(self) -> None:
        """A signed authorization recovers to the payer, as the token checks."""
        auth = make_auth()
        kwargs = {"token_name": "USD Coin", "token_version": "2", "chain_id": 31337, "token": TOKEN}
        sig = eip712.sign_transfer_authorization(PAYER_KEY, auth, **kwargs)  # type: ignore[arg-type]
        digest = eip712.transfer_authorization_digest(auth, **kwargs)  # type: ignore[arg-type]
        assert sig.v in (27, 28)
        assert len(sig.packed) == 65
        assert sig.packed[64] == sig.v
        assert recover(digest, sig) == auth.from_

    @pytest.mark.parametrize("nonce", [b"", bytes(31), bytes(33)])
    def test_nonce_must_be_32_bytes(self, nonce: bytes) -> None:
        """A nonce of the wrong size is refused before anything is signed."""
        with pytest.raises(ValueError, match="nonce must be 32 bytes"):
            make_auth(nonce=nonce)

    def test_negative_value_refused(self) -> None:
        """Atomic amounts are never negative."""
        with pytest.raises(ValueError, match="must not be negative"):
            make_auth(value=-1)


class TestAgentWalletSet:
    def test_digest_matches_hand_computed_vector(self) -> None:
        """The wallet proof digest uses the ERC-8004 registry domain and pinned typehash."""
        wallet = Account.from_key(WALLET_KEY).address
        struct_hash = keccak(
            encode(
                ["bytes32", "uint256", "address", "address", "uint256"],
                [AGENT_WALLET_SET_TYPEHASH, 7, wallet, OWNER, 1_800_000_000],
            )
        )
        expected = keccak(
            b"\x19\x01"
            + domain_separator("ERC8004IdentityRegistry", "1", 31337, REGISTRY)
            + struct_hash
        )
        got = eip712.agent_wallet_set_digest(
            agent_id=7,
            new_wallet=wallet,
            owner=OWNER,
            deadline=1_800_000_000,
            chain_id=31337,
            registry=REGISTRY,
        )
        assert got == expected

    def test_signature_recovers_new_wallet(self) -> None:
        """The proof is signed by the new wallet, whatever the owner is."""
        wallet = Account.from_key(WALLET_KEY).address
        common = {"agent_id": 0, "owner": OWNER.lower(), "deadline": 5, "chain_id": 1}
        sig = eip712.sign_agent_wallet_set(WALLET_KEY, registry=REGISTRY, **common)  # type: ignore[arg-type]
        digest = eip712.agent_wallet_set_digest(
            new_wallet=wallet,
            registry=to_checksum_address(REGISTRY),
            **common,  # type: ignore[arg-type]
        )
        assert recover(digest, sig) == wallet
