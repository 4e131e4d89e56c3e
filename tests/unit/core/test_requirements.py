"""Requirements: what the official client needs to pay us, in v2 and v1 shapes."""

from __future__ import annotations

import base64
import json

from mesh_x402.core.headers import encode_payment_required
from mesh_x402.core.ports import TokenDomain
from mesh_x402.core.requirements import (
    MAX_TIMEOUT_SECONDS,
    build_payment_required,
    build_requirements,
    build_v1_body,
    v1_network,
)
from x402.http.utils import decode_payment_required_header
from x402.schemas import PaymentRequired

TOKEN = TokenDomain("USD Coin", "2", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PAY_TO = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


class TestRequirements:
    def test_v2_header_round_trips_through_the_sdk(self) -> None:
        """The SDK client decodes our PAYMENT-REQUIRED header into the exact terms."""
        requirements = build_requirements(TOKEN, PAY_TO, 4321)
        header = encode_payment_required(build_payment_required(requirements, "http://h/v1/x"))
        decoded = decode_payment_required_header(header)
        assert isinstance(decoded, PaymentRequired)
        (accepted,) = decoded.accepts
        assert accepted == requirements
        wire = json.loads(base64.b64decode(header))["accepts"][0]
        assert wire["amount"] == "4321"
        assert wire["maxTimeoutSeconds"] == MAX_TIMEOUT_SECONDS
        assert wire["network"] == "eip155:31337"
        assert wire["extra"] == {"name": "USD Coin", "version": "2"}
        assert wire["payTo"] == PAY_TO
        assert wire["asset"] == TOKEN.address

    def test_header_is_standard_base64(self) -> None:
        """The client refuses URL-safe base64, so the header never uses it."""
        requirements = build_requirements(TOKEN, PAY_TO, 1)
        header = encode_payment_required(
            build_payment_required(requirements, "http://h/?q=" + "\xff" * 50)
        )
        assert "-" not in header
        assert "_" not in header

    def test_v1_body(self) -> None:
        """The v1 JSON body names the amount maxAmountRequired and carries the resource."""
        requirements = build_requirements(TOKEN, PAY_TO, 99)
        body = build_v1_body(requirements, "http://h/v1/chat/completions", error="nope")
        assert body["x402Version"] == 1
        assert body["error"] == "nope"
        (entry,) = body["accepts"]
        assert entry["maxAmountRequired"] == "99"
        assert entry["resource"] == "http://h/v1/chat/completions"
        assert entry["network"] == "eip155:31337"
        assert entry["extra"]["name"] == "USD Coin"

    def test_v1_network_names(self) -> None:
        """Known chains keep their legacy v1 name; local chains use CAIP-2."""
        assert v1_network(8453) == "base"
        assert v1_network(84532) == "base-sepolia"
        assert v1_network(31337) == "eip155:31337"
