"""Pricing of LLM spans: genai-prices' data compiled to per-token rates, plus negotiated overrides.

    pricer = Pricer(load_price_overrides("overrides.yaml"))
    price = pricer.price("anthropic", "claude-sonnet-4-5-20250929", TokenUsage(12_000, 800), at)

How prices are computed, the overrides format and hand-checked examples: ``docs/pricing.md``.
"""

from spendgate_collector.pricing.overrides import (
    CustomModel,
    Discount,
    PriceOverrides,
    PriceOverridesError,
    load_price_overrides,
    parse_price_overrides,
)
from spendgate_collector.pricing.pricer import Pricer
from spendgate_collector.pricing.types import Price, PricerStats, TokenUsage

__all__ = [
    "CustomModel",
    "Discount",
    "Price",
    "PriceOverrides",
    "PriceOverridesError",
    "Pricer",
    "PricerStats",
    "TokenUsage",
    "load_price_overrides",
    "parse_price_overrides",
]
