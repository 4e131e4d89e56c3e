"""Pricing: the quote is the request's maximum charge; the charge never exceeds it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mesh_x402.config import Price, PricingConfig
from mesh_x402.core.pricing import (
    TEMPLATE_ALLOWANCE,
    PriceRefusal,
    Quote,
    charge_for_usage,
    quote_request,
)

SHEET = PricingConfig(
    default=Price(base=100, prompt_per_1k=1000, completion_per_1k=3000),
    models={"big": Price(base=1000, prompt_per_1k=2000, completion_per_1k=8000)},
    max_completion_tokens=512,
)


def _quote(body: dict[str, object], size: int = 1000, sheet: PricingConfig = SHEET) -> Quote:
    quote = quote_request(sheet, body, size)
    assert isinstance(quote, Quote)
    return quote


class TestQuote:
    def test_listed_model_uses_its_price(self) -> None:
        """A model on the sheet is priced from its own entry, with max_tokens as the ceiling."""
        quote = _quote({"model": "big", "max_tokens": 100}, size=744)
        assert quote.prompt_ceiling == 744 + TEMPLATE_ALLOWANCE
        assert quote.completion_ceiling == 100
        # 1000 + ceil(1000 * 2000 / 1000) + ceil(100 * 8000 / 1000)
        assert quote.amount == 1000 + 2000 + 800
        assert quote.max_tokens_to_set is None

    def test_unlisted_model_gets_default_and_ceiling_injected(self) -> None:
        """Without max_tokens the configured ceiling is quoted and must be forwarded."""
        quote = _quote({"model": "other"}, size=0)
        assert quote.completion_ceiling == 512
        assert quote.max_tokens_to_set == 512
        assert quote.amount == 100 + 256 + 1536

    def test_max_completion_tokens_wins_and_n_multiplies(self) -> None:
        """max_completion_tokens is the newer name; n choices multiply the ceiling."""
        quote = _quote({"model": "x", "max_completion_tokens": 10, "max_tokens": 99, "n": 3})
        assert quote.completion_ceiling == 30

    def test_partial_thousand_rounds_up(self) -> None:
        """One token at 1 unit per 1k still costs 1: a partial thousand is never free."""
        sheet = PricingConfig(default=Price(base=0, prompt_per_1k=1, completion_per_1k=1))
        assert charge_for_usage(_quote({"model": "m"}, sheet=sheet), 1, 0) == 1

    def test_refused_unknown_model_is_404(self) -> None:
        """With unknown_models = refuse, an unlisted model is not payable."""
        sheet = SHEET.model_copy(update={"unknown_models": "refuse"})
        refusal = quote_request(sheet, {"model": "nope"}, 10)
        assert refusal == PriceRefusal(
            404, "model_not_found", "model 'nope' has no price on this node"
        )
        assert isinstance(quote_request(sheet, {"model": "big"}, 10), Quote)

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"model": ""},
            {"model": 7},
            {"model": "m", "max_tokens": 0},
            {"model": "m", "max_tokens": "10"},
            {"model": "m", "max_tokens": True},
            {"model": "m", "max_completion_tokens": -1},
            {"model": "m", "n": 0},
            {"model": "m", "n": 10_000},
            {"model": "m", "max_tokens": 10**30},
        ],
    )
    def test_bad_fields_are_400(self, body: dict[str, object]) -> None:
        """A request the gate cannot price is a client error naming the field."""
        refusal = quote_request(SHEET, body, 10)
        assert isinstance(refusal, PriceRefusal)
        assert refusal.status == 400
        assert refusal.reason == "invalid_request"

    def test_quote_beyond_int64_is_refused(self) -> None:
        """A price sheet and request whose maximum cannot be journalled are a 400, not a crash."""
        sheet = PricingConfig(default=Price(base=2**62, prompt_per_1k=0, completion_per_1k=2**62))
        refusal = quote_request(sheet, {"model": "m", "max_tokens": 1000}, 10)
        assert isinstance(refusal, PriceRefusal)
        assert refusal.status == 400
        assert "too large" in refusal.message


class TestCharge:
    def test_charge_from_usage(self) -> None:
        """The actual charge prices the reported usage, not the ceiling."""
        quote = _quote({"model": "big", "max_tokens": 100})
        assert charge_for_usage(quote, 10, 20) == 1000 + 20 + 160

    def test_charge_capped_at_quote(self) -> None:
        """An upstream reporting more than the ceilings cannot charge above the authorization."""
        quote = _quote({"model": "big", "max_tokens": 100})
        assert charge_for_usage(quote, 10**6, 10**6) == quote.amount

    @given(
        size=st.integers(0, 10**6),
        max_tokens=st.integers(1, 10**5),
        prompt=st.integers(0, 10**7),
        completion=st.integers(0, 10**7),
    )
    def test_charge_never_exceeds_quote(
        self, size: int, max_tokens: int, prompt: int, completion: int
    ) -> None:
        """For any request and any usage, the charge is at most the quote."""
        quote = _quote({"model": "big", "max_tokens": max_tokens}, size=size)
        assert 0 <= charge_for_usage(quote, prompt, completion) <= quote.amount

    def test_negative_usage_is_a_bug(self) -> None:
        """Negative token counts never price to a smaller charge silently."""
        with pytest.raises(ValueError, match="negative"):
            charge_for_usage(_quote({"model": "m"}), -1, 0)
