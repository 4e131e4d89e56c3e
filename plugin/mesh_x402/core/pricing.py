"""Pricing: the quote (maximum charge) for a request and the charge from usage.

x402 `exact` authorizes one fixed amount before generation, but the real
cost is only known after it. So the quote is the request's *maximum*
possible charge, and the charge computed from the upstream's `usage` is
capped at it; the settlement refunds the difference.

Prompt ceiling rule: one token per byte of the request body, plus
`TEMPLATE_ALLOWANCE` tokens. Every tokenizer mesh-llm runs (byte-level BPE,
SentencePiece with byte fallback) consumes at least one byte of text per
token, and every byte of prompt text is in the JSON body (escapes only make
it longer), so the body size bounds the text's tokens. What the body does
not contain is the chat template's own tokens: role markers, special tokens
and some templates' default system prompt. Per message those are far fewer
than the message's JSON framing (`{"role":"user","content":""}` alone is 28
bytes), and the allowance covers a default system prompt. The bound is loose
on purpose: it is only what the client authorizes, never what it pays.

Completion ceiling: `max_completion_tokens`, else `max_tokens`, else the
configured ceiling, which the gate then writes into the forwarded request so
the upstream cannot generate past what was quoted; times `n` choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mesh_x402.config import Price, PricingConfig

__all__ = [
    "MAX_CHOICES",
    "MAX_QUOTE",
    "MAX_TOKENS_LIMIT",
    "TEMPLATE_ALLOWANCE",
    "PriceRefusal",
    "Quote",
    "charge_for_usage",
    "price_for",
    "quote_request",
]

TEMPLATE_ALLOWANCE: Final = 256
MAX_CHOICES: Final = 16
# No model generates this many tokens in one answer; a larger value is a
# client error, not a price (it would also overflow the journal's int64).
MAX_TOKENS_LIMIT: Final = 2**24
MAX_QUOTE: Final = 2**63 - 1


@dataclass(frozen=True)
class Quote:
    """The maximum charge for one request, and what it was derived from.

    Attributes:
        model: the requested model id.
        price: the price sheet entry that applies.
        prompt_ceiling: most prompt tokens the request can count.
        completion_ceiling: most completion tokens it can generate (all choices).
        amount: the maximum charge in atomic units; what the client authorizes.
        max_tokens_to_set: a `max_tokens` the gate must add to the forwarded
            body because the request set none; None when the request had one.
    """

    model: str
    price: Price
    prompt_ceiling: int
    completion_ceiling: int
    amount: int
    max_tokens_to_set: int | None


@dataclass(frozen=True)
class PriceRefusal:
    """Why a request cannot be quoted.

    Attributes:
        status: the HTTP status the edge answers (400 bad request, 404 unknown model).
        reason: a stable snake_case code.
        message: a human-readable explanation naming the field.
    """

    status: int
    reason: str
    message: str


def _tokens_cost(tokens: int, per_1k: int) -> int:
    # Rounded up so that a partial thousand is never free, and so the charge
    # is monotone in tokens: usage within the ceilings never prices above the quote.
    return -(-tokens * per_1k // 1000)


def price_for(pricing: PricingConfig, model: str) -> Price | None:
    """The price of a model, the default for unlisted ones, or None if refused."""
    listed = pricing.models.get(model)
    if listed is not None:
        return listed
    return pricing.default if pricing.unknown_models == "default" else None


def _positive_int(
    body: Mapping[str, Any], field: str, limit: int = MAX_TOKENS_LIMIT
) -> int | PriceRefusal | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return PriceRefusal(400, "invalid_request", f"{field} must be a positive integer")
    if value > limit:
        return PriceRefusal(400, "invalid_request", f"{field} must be at most {limit}")
    return value


def quote_request(
    pricing: PricingConfig, body: Mapping[str, Any], body_bytes: int
) -> Quote | PriceRefusal:
    """Quote the maximum charge for an OpenAI completion or chat request.

    Args:
        pricing: the node's price sheet.
        body: the parsed JSON request body.
        body_bytes: the size of the raw body as received, for the prompt ceiling.

    Returns:
        The quote, or a refusal with the status the edge should answer.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return PriceRefusal(400, "invalid_request", "model must be a non-empty string")
    price = price_for(pricing, model)
    if price is None:
        return PriceRefusal(404, "model_not_found", f"model {model!r} has no price on this node")
    requested: int | None = None
    for field in ("max_completion_tokens", "max_tokens"):
        value = _positive_int(body, field)
        if isinstance(value, PriceRefusal):
            return value
        if value is not None and requested is None:
            requested = value
    choices = _positive_int(body, "n", MAX_CHOICES)
    if isinstance(choices, PriceRefusal):
        return choices
    per_choice = requested if requested is not None else pricing.max_completion_tokens
    completion_ceiling = per_choice * (choices or 1)
    prompt_ceiling = body_bytes + TEMPLATE_ALLOWANCE
    amount = (
        price.base
        + _tokens_cost(prompt_ceiling, price.prompt_per_1k)
        + _tokens_cost(completion_ceiling, price.completion_per_1k)
    )
    if amount > MAX_QUOTE:
        return PriceRefusal(400, "invalid_request", "the request's maximum charge is too large")
    return Quote(
        model=model,
        price=price,
        prompt_ceiling=prompt_ceiling,
        completion_ceiling=completion_ceiling,
        amount=amount,
        max_tokens_to_set=None if requested is not None else per_choice,
    )


def charge_for_usage(quote: Quote, prompt_tokens: int, completion_tokens: int) -> int:
    """The actual charge for the usage the upstream reported, never above the quote.

    The cap matters when an upstream reports more tokens than the ceilings
    allow (a template longer than the allowance): the client authorized the
    quote and nothing more.
    """
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts must not be negative")
    price = quote.price
    actual = (
        price.base
        + _tokens_cost(prompt_tokens, price.prompt_per_1k)
        + _tokens_cost(completion_tokens, price.completion_per_1k)
    )
    return min(actual, quote.amount)
