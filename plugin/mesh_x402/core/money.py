"""Money: `int` atomic units inside, decimal strings on the wire.

x402 carries amounts as JSON strings of atomic units ("1500" is 0.0015 USDC
at 6 decimals). Parsing is strict: digits only, no sign, no exponent, no
float, so a value can never be rounded or reinterpreted on the way in.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_UINT256", "format_atomic", "format_units", "parse_atomic"]

MAX_UINT256: Final = 2**256 - 1
_DIGITS: Final = re.compile(r"[0-9]{1,78}")


def parse_atomic(text: str) -> int:
    """Parse a decimal string of atomic units.

    Raises:
        ValueError: not a plain non-negative decimal integer that fits uint256.
    """
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise ValueError(f"amount must be a decimal string of atomic units, got {text!r}")
    value = int(text)
    if value > MAX_UINT256:
        raise ValueError(f"amount {text!r} does not fit in uint256")
    return value


def format_atomic(amount: int) -> str:
    """The wire form of an amount: its decimal digits."""
    if amount < 0:
        raise ValueError(f"amount must not be negative, got {amount}")
    return str(amount)


def format_units(amount: int, decimals: int) -> str:
    """A human-readable amount, e.g. `format_units(1500, 6) == "0.001500"`."""
    if amount < 0:
        raise ValueError(f"amount must not be negative, got {amount}")
    if decimals == 0:
        return str(amount)
    whole, fraction = divmod(amount, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}"
