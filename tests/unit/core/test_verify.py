"""Local verification: each reference-verifier check, in order, with the SDK's reasons."""

from __future__ import annotations

from typing import Any

import eth_keys
import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402.core import verify
from mesh_x402.core.headers import decode_payment_header
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.requirements import build_requirements
from mesh_x402.core.verify import (
    SECP256K1_HALF_N,
    Reason,
    VerifyResult,
    checksum_address,
    eip3009_digest,
    recover_signer,
    verify_payment,
)
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.types import ExactEIP3009Authorization

NOW = 1_700_000_000
TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PAY_TO = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = Account.from_key("0x" + "11" * 32)
OTHER = Account.from_key("0x" + "22" * 32)
REQUIREMENTS = build_requirements(TOKEN, PAY_TO, 1000)
NONCE = "0x" + "ab" * 32


def make_payment(
    *, token: TokenDomain = TOKEN, account: Any = PAYER, **overrides: Any
) -> dict[str, Any]:
    return sign_payment(account, REQUIREMENTS, token, now=NOW, nonce=NONCE, **overrides)


def check(payload: dict[str, Any], *, now: int = NOW, spendable: int | None = None) -> VerifyResult:
    decoded = decode_payment_header(encode_header(payload))
    return verify_payment(decoded, REQUIREMENTS, TOKEN, now=now, spendable=spendable)


class TestCrypto:
    def test_eth_keys_uses_coincurve(self) -> None:
        """Recovery runs on libsecp256k1, not the ~50x slower pure-Python backend."""
        assert isinstance(verify.KEYS.backend, eth_keys.backends.CoinCurveECCBackend)

    def test_digest_matches_the_sdk(self) -> None:
        """Our hand-encoded digest equals the SDK's EIP-712 hash for the same message."""
        sdk = hash_eip3009_authorization(
            ExactEIP3009Authorization(
                from_address=PAYER.address,
                to=PAY_TO,
                value="1000",
                valid_after="5",
                valid_before="99999999999",
                nonce=NONCE,
            ),
            31337,
            TOKEN.address,
            "USD Coin",
            "2",
        )
        ours = eip3009_digest(
            TOKEN,
            payer=PAYER.address,
            to=PAY_TO,
            value=1000,
            valid_after=5,
            valid_before=99999999999,
            nonce=bytes.fromhex("ab" * 32),
        )
        assert ours == sdk

    def test_high_s_and_bad_v_are_refused(self) -> None:
        """A malleated (high-s) twin of a valid signature does not recover."""
        digest = bytes(range(32))
        signed = PAYER.unsafe_sign_hash(digest)
        good = signed.signature
        assert recover_signer(digest, good) == PAYER.address
        n = 2 * SECP256K1_HALF_N + 1
        r, s, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
        twin = r + (n - s).to_bytes(32, "big") + bytes([55 - v])
        assert recover_signer(digest, twin) is None
        assert recover_signer(digest, r + good[32:64] + bytes([29])) is None
        assert recover_signer(digest, good[:64]) is None
        assert recover_signer(digest, r + good[32:64] + bytes([v - 27])) == PAYER.address

    def test_r_outside_the_curve_order_is_refused(self) -> None:
        """r of zero, or at or above the curve order, recovers nothing (ecrecover's rule)."""
        digest = bytes(range(32))
        good = PAYER.unsafe_sign_hash(digest).signature
        n = 2 * SECP256K1_HALF_N + 1
        for r in (0, n, 2**256 - 1):
            assert recover_signer(digest, r.to_bytes(32, "big") + good[32:]) is None
        assert recover_signer(digest, good[:32] + bytes(32) + good[64:]) is None

    def test_recovers_any_signer(self) -> None:
        """Recovery agrees with eth-account's for signers and digests it did not see."""
        for i in range(1, 20):
            account = Account.from_key(i.to_bytes(32, "big"))
            digest = bytes([i]) * 32
            signature = account.unsafe_sign_hash(digest).signature
            assert recover_signer(digest, signature) == account.address

    @given(st.binary(min_size=20, max_size=20))
    def test_checksum_spelling_is_eip55(self, raw: bytes) -> None:
        assert checksum_address(raw) == to_checksum_address(raw)


class TestVerify:
    def test_valid_v2_and_v1(self) -> None:
        """A correct payment passes and yields the parsed authorization."""
        for version in (2, 1):
            result = check(make_payment(version=version))
            assert result.ok, result
            assert result.payment is not None
            assert result.payment.payer == PAYER.address
            assert result.payment.value == 1000
            assert result.payment.nonce == NONCE

    def test_the_payer_in_any_case_is_the_signer(self) -> None:
        """`from` spelt lower-case still names the signer, and is kept as spelt."""
        lower = PAYER.address.lower()
        result = check(make_payment(**{"from": lower}))
        assert result.ok, result
        assert result.payment is not None
        assert result.payment.payer == lower
        other = check(make_payment(**{"from": OTHER.address.lower()}))
        assert (other.ok, other.reason) == (False, Reason.SIGNATURE)

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"accepted": {"scheme": "upto"}}, Reason.UNSUPPORTED_SCHEME),
            ({"version": 1, "scheme": "upto"}, Reason.UNSUPPORTED_SCHEME),
            ({"accepted": {"network": "eip155:8453"}}, Reason.NETWORK_MISMATCH),
            ({"version": 1, "network": "base"}, Reason.NETWORK_MISMATCH),
            ({"accepted": {"amount": "999"}}, Reason.INVALID_PAYMENT_REQUIREMENTS),
            ({"accepted": {"asset": "0x" + "33" * 20}}, Reason.INVALID_PAYMENT_REQUIREMENTS),
            ({"accepted": {"payTo": "0x" + "33" * 20}}, Reason.INVALID_PAYMENT_REQUIREMENTS),
            ({"accepted": {"maxTimeoutSeconds": 60}}, Reason.INVALID_PAYMENT_REQUIREMENTS),
            ({"accepted": {"extra": {"name": "USDC"}}}, Reason.INVALID_PAYMENT_REQUIREMENTS),
            ({"to": "0x" + "33" * 20}, Reason.RECIPIENT_MISMATCH),
            ({"value": "999"}, Reason.VALUE_MISMATCH),
            ({"value": "1001"}, Reason.VALUE_MISMATCH),
            ({"validBefore": str(NOW + 5)}, Reason.VALID_BEFORE),
            ({"validBefore": str(NOW - 1)}, Reason.VALID_BEFORE),
            ({"validAfter": str(NOW + 1)}, Reason.VALID_AFTER),
            ({"signature": "0x"}, Reason.SIGNATURE),
            ({"signature": "0x" + "00" * 65}, Reason.SIGNATURE),
            ({"signature": "0x" + "12" * 130}, Reason.SIGNATURE),
            ({"from": OTHER.address}, Reason.SIGNATURE),
            ({"version": 1, "value": "5"}, Reason.VALUE_MISMATCH),
        ],
    )
    def test_each_refusal(self, overrides: dict[str, Any], reason: str) -> None:
        """Each wrong field is refused with the reference verifier's reason."""
        result = check(make_payment(**overrides))
        assert not result.ok
        assert result.reason == reason
        assert result.message

    def test_signed_for_another_token_domain(self) -> None:
        """A signature over another token (name, chain or address) does not verify."""
        for token in (
            TokenDomain("USDC", "2", 31337, TOKEN.address),
            TokenDomain("USD Coin", "1", 31337, TOKEN.address),
            TokenDomain("USD Coin", "2", 1, TOKEN.address),
            TokenDomain("USD Coin", "2", 31337, "0x" + "44" * 20),
        ):
            assert check(make_payment(token=token)).reason == Reason.SIGNATURE

    def test_validity_window_edges(self) -> None:
        """validBefore = now + 6 and validAfter = now are still acceptable."""
        assert check(make_payment(validBefore=str(NOW + 6), validAfter=str(NOW))).ok

    def test_balance(self) -> None:
        """The spendable balance (cached minus unsettled) must cover the amount."""
        assert check(make_payment(), spendable=1000).ok
        assert check(make_payment(), spendable=999).reason == Reason.INSUFFICIENT_BALANCE
