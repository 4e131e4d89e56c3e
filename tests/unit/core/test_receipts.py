"""The EIP-712 receipt: digest vectors, signing, and the invariants it refuses to break."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from mesh_x402.core.receipts import (
    CREDIT_TYPE,
    RECEIPT_TYPE,
    RECEIPT_TYPES,
    Credit,
    Receipt,
    ReceiptDomain,
    receipt_digest,
    recover_receipt_signer,
    sign_digest,
    sign_receipt,
)

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
SETTLEMENT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DOMAIN = ReceiptDomain(31337, SETTLEMENT)
# Pinned: a change to the types, their order or the encoding changes it.
VECTOR_DIGEST = "57dbbcf74e73b90dfc3219f3105b5fbc7291571fd776c49273c0c0114232b809"


def make_receipt(**overrides: Any) -> Receipt:
    base = Receipt(
        payer="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        nonce=bytes.fromhex("ab" * 32),
        value=1_000_000,
        request_id="0b6c1f1e-8a1c-4a8e-9d0e-2b7d2f6f1c11",
        model="qwen3-8b",
        prompt_tokens=120,
        completion_tokens=480,
        price_version=3,
        timestamp=1_764_000_000,
        charge=10_660,
        refund=989_340,
        entry_agent_id=0,
        credits=(Credit(0, 1_066), Credit(2, 9_594)),
        policy="vram-proportional",
    )
    return replace(base, **overrides)


def eth_account_digest(receipt: Receipt, domain: ReceiptDomain) -> bytes:
    """The digest from eth-account's generic EIP-712 encoder (independent of ours)."""
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **RECEIPT_TYPES,
        },
        "primaryType": "Receipt",
        "domain": {
            "name": "MeshSettlement",
            "version": "1",
            "chainId": domain.chain_id,
            "verifyingContract": domain.settlement,
        },
        "message": {
            "payer": receipt.payer,
            "nonce": receipt.nonce,
            "value": receipt.value,
            "requestId": receipt.request_id,
            "model": receipt.model,
            "promptTokens": receipt.prompt_tokens,
            "completionTokens": receipt.completion_tokens,
            "priceVersion": receipt.price_version,
            "timestamp": receipt.timestamp,
            "charge": receipt.charge,
            "refund": receipt.refund,
            "entryAgentId": receipt.entry_agent_id,
            "credits": [{"agentId": c.agent_id, "amount": c.amount} for c in receipt.credits],
            "policy": receipt.policy,
        },
    }
    message = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + message.version + message.header + message.body)


class TestDigest:
    def test_type_strings_match_the_types_table(self) -> None:
        """The hand-written type strings describe the same fields as the eth-account table."""
        for name, type_string in (("Receipt", RECEIPT_TYPE), ("Credit", CREDIT_TYPE)):
            fields = ",".join(f"{f['type']} {f['name']}" for f in RECEIPT_TYPES[name])
            assert type_string == f"{name}({fields})"

    def test_fixed_vector(self) -> None:
        """The digest of the fixed receipt is the pinned value and eth-account's."""
        receipt = make_receipt()
        assert receipt_digest(receipt, DOMAIN).hex() == eth_account_digest(receipt, DOMAIN).hex()
        assert receipt_digest(receipt, DOMAIN).hex() == VECTOR_DIGEST

    @pytest.mark.parametrize(
        "overrides",
        [
            {},
            {"credits": (), "charge": 0, "refund": 1_000_000},
            {"credits": (Credit(5, 10_660),), "entry_agent_id": 5, "model": "é/ü 模型"},
            {"value": 2**256 - 1, "charge": 2**200, "refund": 2**256 - 1 - 2**200,
             "credits": (Credit(2**64, 2**200),)},
        ],
    )  # fmt: skip
    def test_matches_eth_account(self, overrides: dict[str, Any]) -> None:
        """Our encoder agrees with eth-account for empty, unicode and extreme receipts."""
        receipt = make_receipt(**overrides)
        for domain in (DOMAIN, ReceiptDomain(8453, "0x" + "ff" * 20)):
            assert receipt_digest(receipt, domain) == eth_account_digest(receipt, domain)

    def test_every_field_and_the_domain_count(self) -> None:
        """Changing any field, the chain or the contract changes the digest."""
        base = receipt_digest(make_receipt(), DOMAIN)
        variants = [
            make_receipt(request_id="other"),
            make_receipt(timestamp=1),
            make_receipt(policy="other"),
            make_receipt(credits=(Credit(0, 1_065), Credit(2, 9_595))),
            make_receipt(credits=(Credit(2, 9_594), Credit(0, 1_066))),
        ]
        digests = {receipt_digest(v, DOMAIN) for v in variants}
        digests.add(receipt_digest(make_receipt(), ReceiptDomain(1, SETTLEMENT)))
        digests.add(receipt_digest(make_receipt(), ReceiptDomain(31337, "0x" + "11" * 20)))
        assert base not in digests
        assert len(digests) == len(variants) + 2


class TestSignature:
    def test_sign_and_recover(self) -> None:
        """Our signature is eth-account's, and recovers the signer's address."""
        receipt = make_receipt()
        signature = sign_receipt(KEY, receipt, DOMAIN)
        address = Account.from_key(KEY).address
        assert recover_receipt_signer(receipt, DOMAIN, signature) == address
        typed_signature = Account.unsafe_sign_hash(receipt_digest(receipt, DOMAIN), KEY).signature
        assert signature == bytes(typed_signature)

    def test_digest_signatures_are_eth_accounts_for_any_key(self) -> None:
        """Both values of v, for keys and digests the fixed vectors do not use."""
        vs = set()
        for i in range(1, 25):
            key, digest = i.to_bytes(32, "big"), keccak(bytes([i]))
            expected = bytes(Account.unsafe_sign_hash(digest, key).signature)
            assert sign_digest(key, digest) == expected
            vs.add(expected[64])
        assert vs == {27, 28}

    def test_tampered_receipt_recovers_someone_else(self) -> None:
        """A receipt changed after signing does not recover the signer."""
        signature = sign_receipt(KEY, make_receipt(), DOMAIN)
        tampered = make_receipt(credits=(Credit(0, 66), Credit(2, 10_594)))
        assert recover_receipt_signer(tampered, DOMAIN, signature) != Account.from_key(KEY).address

    def test_malformed_signature(self) -> None:
        """A signature of the wrong length or a bad v recovers nobody."""
        signature = sign_receipt(KEY, make_receipt(), DOMAIN)
        assert recover_receipt_signer(make_receipt(), DOMAIN, signature[:64]) is None
        assert recover_receipt_signer(make_receipt(), DOMAIN, signature[:64] + b"\x05") is None


class TestInvariants:
    @pytest.mark.parametrize(
        ("overrides", "problem"),
        [
            ({"charge": 1_000_001, "refund": 0}, "exceeds the authorized"),
            ({"refund": 1}, "refund"),
            ({"credits": (Credit(0, 1),)}, "sum to 1"),
            ({"credits": (Credit(0, 10_000), Credit(0, 660))}, "more than once"),
            ({"payer": "0x1234"}, "payer"),
            ({"nonce": b"\x00" * 31}, "32 bytes"),
            ({"value": -1}, "value"),
            ({"model": "m" * 300}, "model"),
        ],
    )
    def test_refused(self, overrides: dict[str, Any], problem: str) -> None:
        """A receipt that breaks the money rules or a field's shape is refused, named."""
        with pytest.raises(ValueError, match=problem):
            make_receipt(**overrides)

    def test_json_round_trip(self) -> None:
        """to_json/from_json keeps every field; big amounts travel as strings."""
        receipt = make_receipt(value=2**255, charge=2**255, refund=0, credits=(Credit(0, 2**255),))
        data = receipt.to_json()
        assert data["value"] == str(2**255)
        assert Receipt.from_json(data) == receipt

    def test_json_missing_field(self) -> None:
        """A JSON receipt without a field is refused with the field's name."""
        data = make_receipt().to_json()
        del data["model"]
        with pytest.raises(ValueError, match="'model' is missing"):
            Receipt.from_json(data)

    def test_payer_spelling_does_not_matter(self) -> None:
        """A lower-case payer gives the same receipt (and digest) as its checksummed form."""
        lower = make_receipt(payer=make_receipt().payer.lower())
        assert lower == make_receipt()
        assert lower.payer == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
