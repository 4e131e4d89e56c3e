"""Log lines never carry a secret-looking field's value."""

from __future__ import annotations

from mesh_x402.log import REDACTED, redact_secrets


def test_secret_looking_fields_are_redacted_whatever_their_case() -> None:
    """Keys that name a key, signature, payment header or password lose their value,
    on every line (the decision per key is cached), and other fields are kept."""
    for _ in range(2):
        line = redact_secrets(
            None,
            "info",
            {
                "event": "payment.accepted",
                "Private_Key": "0xabc",
                "payment_signature": "0xdef",
                "X-PAYMENT": "eyJ4",
                "db_password": "hunter2",
                "payer": "0x19E7",
                "amount": 5,
            },
        )
        assert line == {
            "event": "payment.accepted",
            "Private_Key": REDACTED,
            "payment_signature": REDACTED,
            "X-PAYMENT": REDACTED,
            "db_password": REDACTED,
            "payer": "0x19E7",
            "amount": 5,
        }
