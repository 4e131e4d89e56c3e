"""Payment headers: every kind of garbage is a named error with the right status."""

from __future__ import annotations

import base64
import json

import pytest
from eth_account import Account
from mesh_x402.core.headers import (
    MAX_HEADER_BYTES,
    PaymentHeaderError,
    decode_payment_header,
)
from mesh_x402.core.payer import encode_header, sign_payment
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.requirements import build_requirements

TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PAYER = Account.from_key("0x" + "11" * 32)
REQUIREMENTS = build_requirements(TOKEN, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", 1000)


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _payload(**overrides: object) -> dict[str, object]:
    return sign_payment(PAYER, REQUIREMENTS, TOKEN, now=1_700_000_000, **overrides)


class TestDecode:
    def test_v2_and_v1(self) -> None:
        """Both versions decode to the SDK models plus the checked inner payload."""
        v2 = decode_payment_header(encode_header(_payload()))
        assert v2.version == 2
        assert v2.exact.authorization.from_ == PAYER.address
        v1 = decode_payment_header(encode_header(_payload(version=1)))
        assert v1.version == 1
        assert v1.exact.authorization.value == "1000"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("A" * (MAX_HEADER_BYTES + 1), "exceeds"),
            ("not base64!", "base64"),
            (base64.urlsafe_b64encode(b"\xfb\xff" * 30).decode(), "base64"),
            (base64.b64encode(b"\xff\xfe").decode(), "JSON"),
            (base64.b64encode(b"{not json").decode(), "JSON"),
            (_b64([1, 2]), "not an object"),
            (base64.b64encode(b"[" * 12000).decode(), "JSON"),
            (_b64({"x402Version": 2, "payload": {}}), "accepted"),
            (_b64({"x402Version": 1, "scheme": "exact", "network": "n", "payload": []}), "payload"),
        ],
    )
    def test_malformed_is_400(self, value: str, message: str) -> None:
        """Oversized, non-base64, non-JSON and wrong-shaped headers are malformed (400)."""
        with pytest.raises(PaymentHeaderError, match=message) as caught:
            decode_payment_header(value)
        assert caught.value.status == 400
        assert caught.value.reason == "invalid_payload"

    @pytest.mark.parametrize(
        ("path", "bad"),
        [
            (("payload", "authorization", "value"), 1000),
            (("payload", "authorization", "value"), "1.5"),
            (("payload", "authorization", "nonce"), "0x1234"),
            (("payload", "authorization", "from"), "0xnothex"),
            (("payload", "authorization", "validBefore"), None),
            (("payload", "authorization", "validBefore"), "9" * 78),
            (("payload", "authorization", "value"), str(2**256)),
            (("payload", "signature"), "zz"),
            (("accepted", "amount"), 1000),
        ],
    )
    def test_wrong_types_are_400(self, path: tuple[str, ...], bad: object) -> None:
        """A field of the wrong type or shape names itself in the error."""
        payload = _payload()
        target: dict[str, object] = payload
        for key in path[:-1]:
            target = target[key]  # type: ignore[assignment]
        target[path[-1]] = bad
        with pytest.raises(PaymentHeaderError, match=path[-1]) as caught:
            decode_payment_header(encode_header(payload))
        assert caught.value.status == 400

    @pytest.mark.parametrize("version", [0, 3, "2", True, None])
    def test_unknown_version_is_402(self, version: object) -> None:
        """A well-formed payload of an unknown version is refused, not malformed."""
        payload = _payload()
        payload["x402Version"] = version
        with pytest.raises(PaymentHeaderError, match="x402Version") as caught:
            decode_payment_header(encode_header(payload))
        assert caught.value.status == 402
        assert caught.value.reason == "invalid_x402_version"
