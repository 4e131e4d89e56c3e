"""Money: strict decimal strings of atomic units."""

from __future__ import annotations

import pytest
from mesh_x402.core.money import MAX_UINT256, format_atomic, format_units, parse_atomic


class TestMoney:
    def test_round_trip(self) -> None:
        """Wire amounts parse to ints and back unchanged."""
        assert parse_atomic("1500") == 1500
        assert format_atomic(1500) == "1500"
        assert parse_atomic(str(MAX_UINT256)) == MAX_UINT256

    @pytest.mark.parametrize("text", ["", "-1", "1.5", "1e3", " 1", "0x10", "١٢", str(2**256)])
    def test_refuses_anything_but_plain_digits(self, text: str) -> None:
        """Signs, decimals, exponents, hex, non-ASCII digits and overflow are refused."""
        with pytest.raises(ValueError, match="amount"):
            parse_atomic(text)

    def test_format_units(self) -> None:
        """Human display keeps every decimal place."""
        assert format_units(1500, 6) == "0.001500"
        assert format_units(2_000_000, 6) == "2.000000"
        assert format_units(7, 0) == "7"
