"""The compiled prices equal genai-prices' own calc_price, to 1e-9 USD, over thousands of random calls.

Random usages (cache reads and writes, reasoning, totals just around every tier threshold) at random
timestamps (across o3's price cut and DeepSeek's daily off-peak window) for a mix of mainstream
models and every tiered model in the data; then one sweep over every model genai-prices knows.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import random
from datetime import UTC, datetime, timedelta

import pytest
from genai_prices import Usage, calc_price, data_snapshot, types

from spendgate_collector.pricing import Pricer, TokenUsage

TOLERANCE_USD = 1e-9

MAINSTREAM = [
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4.1-mini"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-5"),
    ("openai", "o3"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("azure", "gpt-4.1"),
    ("deepseek", "deepseek-chat"),
    ("deepseek", "deepseek-reasoner"),
    ("x-ai", "grok-4"),
    ("perplexity", "sonar"),  # per-request fee
    ("perplexity", "sonar-deep-research"),  # reasoning has its own rate
]


def _tiered_models() -> list[tuple[str, str, tuple[int, ...]]]:
    """(provider id, model id, tier starts) of every model with a tiered price in the data."""
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            entries = [model.prices] if isinstance(model.prices, types.ModelPrice) else [c.prices for c in model.prices]
            starts = {
                tier.start
                for entry in entries
                for value in vars(entry).values()
                if isinstance(value, types.TieredPrices)
                for tier in value.tiers
            }
            if starts and provider.find_model(model.id) is model:
                found.append((provider.id, model.id, tuple(sorted(starts))))
    return found


def _random_usage(rng: random.Random, thresholds: tuple[int, ...]) -> TokenUsage:
    shape = rng.random()
    if shape < 0.25:
        total = rng.randint(0, 5_000)
    elif shape < 0.55:
        total = rng.randint(0, 150_000)
    elif shape < 0.85:
        total = rng.choice(thresholds) + rng.randint(-3, 3)
    else:
        total = rng.randint(150_000, 1_200_000)
    total = max(total, 0)
    cache_read = rng.randint(0, total) if rng.random() < 0.6 else 0
    cache_write = rng.randint(0, total - cache_read) if rng.random() < 0.4 else 0
    output = rng.randint(0, 60_000)
    reasoning = rng.randint(0, output) if rng.random() < 0.4 else 0
    return TokenUsage(total, output, cache_read, cache_write, reasoning)


def _library(provider: str | None, model: str, usage: TokenUsage, at: datetime) -> tuple[float, float, float]:
    result = calc_price(
        Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            output_reasoning_tokens=usage.reasoning_tokens,
        ),
        model,
        provider_id=provider,
        genai_request_timestamp=at,
    )
    return float(result.input_price), float(result.output_price), float(result.total_price)


def _differs(got: tuple[float | None, ...], expected: tuple[float, ...]) -> bool:
    return any(g is None or abs(g - e) > TOLERANCE_USD for g, e in zip(got, expected, strict=True))


def test_compiled_equals_library_on_random_calls() -> None:
    rng = random.Random(20251103)
    cases = [(provider, model, (200_000,)) for provider, model in MAINSTREAM] + _tiered_models()
    assert len(cases) > 100  # the data has many tiered models; if not, this test lost its point
    start = datetime(2024, 1, 1, tzinfo=UTC)
    pricer = Pricer()
    mismatches = []
    for _ in range(4_000):
        provider, model, thresholds = rng.choice(cases)
        at = start + timedelta(seconds=rng.randint(0, 3 * 365 * 86_400))
        usage = _random_usage(rng, thresholds)
        price = pricer.price(provider, model, usage, at)
        expected = _library(provider, model, usage, at)
        got = (price.input_usd, price.output_usd, price.total_usd)
        if _differs(got, expected):
            mismatches.append((provider, model, at.isoformat(), usage, got, expected))
    assert [] == mismatches[:5]
    stats = pricer.stats()
    assert (0, 0) == (stats.library_fallbacks, stats.unpriced)
    assert stats.cache_hits > 3_000  # most calls reuse an entry compiled earlier


@pytest.mark.parametrize("at", [datetime(2024, 6, 1, tzinfo=UTC), datetime(2026, 11, 20, 20, tzinfo=UTC)])
def test_every_model_in_the_data(at: datetime) -> None:
    # One call per model genai-prices knows: compiled (or library fallback) equals the library, and
    # a model left unpriced is one the library prices at 0.0 for tokens (priced per audio hour,
    # character or page), never one with a real token price.
    rng = random.Random(at.year)
    pricer = Pricer()
    mismatches = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            if provider.find_model(model.id) is not model:
                continue  # the id matches an earlier model's pattern; priced as that one
            usage = _random_usage(rng, (200_000, 272_000))
            price = pricer.price(provider.id, model.id, usage, at)
            expected = _library(provider.id, model.id, usage, at)
            if price.source == "unpriced":
                if expected != (0.0, 0.0, 0.0):
                    mismatches.append((provider.id, model.id, "unpriced", expected))
            elif _differs((price.input_usd, price.output_usd, price.total_usd), expected):
                mismatches.append((provider.id, model.id, price, expected))
    assert [] == mismatches[:5]
    assert pricer.stats().models > 2_000
