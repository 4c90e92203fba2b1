"""Price entries turned into a few float rates, so pricing a call costs a microsecond, not 200.

A genai-prices ``ModelPrice`` is priced per call by decomposing the usage into leaf units and
multiplying each by a ``Decimal`` (or tiered) rate. For the usage a span carries (input, cache read,
cache write, output, reasoning) that reduces to five per-token rates, chosen by total input tokens
when the entry has tiers (crossing a tier re-prices *all* tokens, not just those above it), plus a
per-request fee for the few models that have one. ``compile_price`` builds those rates;
``verify`` checks them against genai-prices itself before they are trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from spendgate_collector.pricing.types import Price

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

Rates = tuple[float, float, float, float, float]
"""USD per token for (uncached input, cache read, cache write, non-reasoning output, reasoning)."""

# The usage keys a span can fill, and the price keys that price them.
_RATE_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok", "output_reasoning_mtok")
_REQUEST_KEY = "requests_kcount"
# Every other price key is for a unit spans never report (audio, images, web searches, 1h cache
# writes, ...). Its usage is 0, so it adds 0 and takes 0 out of its parent unit: safe to ignore.
_PER_MTOK = Decimal(1_000_000)
_PER_K = Decimal(1_000)

# Compiled and library prices agree to float rounding (~1e-16 relative); anything above this is a
# price shape the compiler misunderstood.
TOLERANCE_USD = 1e-9


class Uncompilable(Exception):
    """The price entry has a shape the compiler does not cover; price it with genai-prices instead."""


class NotTokenPriced(Exception):
    """The model has no token prices at all (priced per audio hour, character, page...)."""


@dataclass(frozen=True, slots=True)
class CompiledPrice:
    """A price function: rates below the first tier, rates per tier, a per-request fee."""

    base: Rates
    tiers: tuple[tuple[int, Rates], ...]
    """(start, rates) from the highest start down: rates apply when total input > start."""
    request_usd: float
    source: str
    version: str
    model_ref: str

    def price(self, input_tokens: int, cache_read: int, cache_write: int, output: int, reasoning: int) -> Price:
        """Price a usage that is already consistent (parts within totals, nothing negative)."""
        rates = self.base
        for start, tier_rates in self.tiers:
            if input_tokens > start:
                rates = tier_rates
                break
        r_input, r_read, r_write, r_output, r_reasoning = rates
        input_usd = (input_tokens - cache_read - cache_write) * r_input + cache_read * r_read + cache_write * r_write
        if r_reasoning == r_output:
            # The usual case; one product keeps the price independent of the informational breakdown.
            output_usd = output * r_output
        else:
            output_usd = (output - reasoning) * r_output + reasoning * r_reasoning
        return Price(
            input_usd,
            output_usd,
            input_usd + output_usd + self.request_usd,
            self.source,
            self.version,
            self.model_ref,
        )


def flat_rates(
    input_per_mtok: float,
    output_per_mtok: float,
    cache_read_per_mtok: float | None = None,
    cache_write_per_mtok: float | None = None,
) -> Rates:
    """Per-token rates from per-MTok prices; cache rates default to the input rate."""
    r_input = input_per_mtok / 1e6
    r_output = output_per_mtok / 1e6
    return (
        r_input,
        r_input if cache_read_per_mtok is None else cache_read_per_mtok / 1e6,
        r_input if cache_write_per_mtok is None else cache_write_per_mtok / 1e6,
        r_output,
        r_output,
    )


def compile_price(
    model_price: ModelPrice, *, multiplier: float, source: str, version: str, model_ref: str
) -> CompiledPrice:
    """Compile one genai-prices price entry, scaled by ``multiplier`` (1.0 without a discount).

    Raises ``Uncompilable`` for shapes not covered (tiered per-request fees) and ``NotTokenPriced``
    when the entry prices no tokens at all.
    """
    from genai_prices.types import TieredPrices

    prices = {key: getattr(model_price, key, None) for key in (*_RATE_KEYS, _REQUEST_KEY)}
    if prices["input_mtok"] is None and prices["output_mtok"] is None and _has_any_price(model_price):
        # Priced per audio hour, character or page only: 0.0 for tokens would be a silent zero.
        # An entry with no prices at all is different: genai-prices uses it for free models
        # (":free" variants, subscription-included models), which really cost 0.0.
        raise NotTokenPriced(model_ref)

    request = prices.pop(_REQUEST_KEY)
    if isinstance(request, TieredPrices):
        raise Uncompilable(f"{model_ref}: tiered per-request price")
    request_usd = float(request / _PER_K) * multiplier if request is not None else 0.0

    starts = sorted(
        {tier.start for price in prices.values() if isinstance(price, TieredPrices) for tier in price.tiers}
    )

    def usd(rate: Decimal) -> float:
        """USD per token from a per-MTok rate, scaled by the multiplier."""
        return float(rate / _PER_MTOK) * multiplier

    def rates_above(start: int | None) -> Rates:
        """Rates when total input is above ``start`` (None: below every tier)."""
        per_token = {key: _rate_at(price, start) for key, price in prices.items()}
        r_input = per_token["input_mtok"] or Decimal(0)
        r_output = per_token["output_mtok"] or Decimal(0)
        # An unpriced part is not split out of its total by genai-prices, so it pays the total's rate.
        r_read = per_token["cache_read_mtok"] if per_token["cache_read_mtok"] is not None else r_input
        r_write = per_token["cache_write_mtok"] if per_token["cache_write_mtok"] is not None else r_input
        r_reason = per_token["output_reasoning_mtok"] if per_token["output_reasoning_mtok"] is not None else r_output
        return (usd(r_input), usd(r_read), usd(r_write), usd(r_output), usd(r_reason))

    return CompiledPrice(
        base=rates_above(None),
        tiers=tuple((start, rates_above(start)) for start in reversed(starts)),
        request_usd=request_usd,
        source=source,
        version=version,
        model_ref=model_ref,
    )


def _has_any_price(model_price: ModelPrice) -> bool:
    return any(value is not None for key, value in vars(model_price).items() if not key.startswith("_"))


def _rate_at(price: Decimal | TieredPrices | None, start: int | None) -> Decimal | None:
    """The rate of one price key once total input is above ``start``, as genai-prices picks it."""
    from genai_prices.types import TieredPrices

    if not isinstance(price, TieredPrices):
        return price
    rate = price.base
    if start is not None:
        for tier in price.tiers:  # sorted ascending by genai-prices
            if tier.start <= start:
                rate = tier.price
    return rate


def library_price(
    model: ModelInfo,
    provider: Provider,
    at: datetime,
    usage: tuple[int, int, int, int, int],
) -> tuple[float, float, float]:
    """(input, output, total) USD from genai-prices' own calculation, for the resolved model."""
    from genai_prices import Usage

    input_tokens, cache_read, cache_write, output, reasoning = usage
    result = model.calc_price(
        Usage(
            input_tokens=input_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_tokens=output,
            output_reasoning_tokens=reasoning,
        ),
        provider,
        genai_request_timestamp=at,
    )
    return float(result.input_price), float(result.output_price), float(result.total_price)


def probe_usages(compiled: CompiledPrice) -> list[tuple[int, int, int, int, int]]:
    """Usages that exercise every rate of ``compiled``: zero, small, and just around each tier start."""
    usages = [(0, 0, 0, 0, 0), (1_000, 300, 200, 500, 100), (7, 0, 0, 3, 0)]
    for start, _ in compiled.tiers:
        for total in (start, start + 1):
            usages.append((total, total // 3, total // 7, 1_234, 56))
    return usages


def verify(
    compiled: CompiledPrice,
    library: Callable[[tuple[int, int, int, int, int]], tuple[float, float, float]],
    multiplier: float,
) -> str | None:
    """Compare ``compiled`` with genai-prices on probe usages; return the first disagreement, or None.

    Costs a few library calls (~1 ms) once per compiled entry. It guards against price shapes this
    module reads wrongly, which would otherwise be priced wrong silently on every span.
    """
    for usage in probe_usages(compiled):
        got = compiled.price(*usage)
        if got.input_usd is None or got.output_usd is None or got.total_usd is None:
            return f"usage {usage}: compiled {got} left an amount unpriced"  # price() always fills all three
        expected = tuple(value * multiplier for value in library(usage))
        actual = (got.input_usd, got.output_usd, got.total_usd)
        if any(not math.isclose(a, e, rel_tol=0, abs_tol=TOLERANCE_USD) for a, e in zip(actual, expected, strict=True)):
            return f"usage {usage}: compiled {actual} != genai-prices {expected}"
    return None
