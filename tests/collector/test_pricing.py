"""Tests of spendgate_collector.pricing with hand-checked numbers.

Every expected value is worked out in a comment from the per-MTok rates in genai-prices' bundled
data (genai-prices 0.2.3), so a data update that changes a price fails here loudly rather than
shifting costs silently. Expected values come first; floats are compared to 1e-12 USD.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import importlib.metadata
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from spendgate_collector.pricing import Price, Pricer, TokenUsage
from spendgate_collector.pricing import pricer as pricer_module
from spendgate_collector.pricing.compiled import Uncompilable

AT = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
# The version the installed library reports (uv.lock pins it; `make test-latest` runs a newer one).
LIBRARY = f"genai-prices-{importlib.metadata.version('genai-prices')}"


def usd(value: float) -> object:
    """An expected USD amount, equal to float rounding."""
    return pytest.approx(value, abs=1e-12, rel=0)


def assert_price(expected: tuple[float, float, float], price: Price) -> None:
    assert (usd(expected[0]), usd(expected[1]), usd(expected[2])) == (
        price.input_usd,
        price.output_usd,
        price.total_usd,
    )


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


def test_openai_cached_input_is_priced_once(pricer: Pricer) -> None:
    # gpt-4.1: input $2/MTok, cache read $0.50/MTok, output $8/MTok.
    # 10,000 input of which 8,000 cached:  2,000 x 2/1e6 = 0.004  +  8,000 x 0.5/1e6 = 0.004  -> 0.008
    # 500 output:                          500 x 8/1e6 = 0.004
    # total 0.012 (0.024 if the cached 8,000 were also charged as plain input)
    price = pricer.price("openai", "gpt-4.1-2025-04-14", TokenUsage(10_000, 500, cache_read_tokens=8_000), AT)
    assert_price((0.008, 0.004, 0.012), price)
    assert Price(price.input_usd, price.output_usd, price.total_usd, "genai-prices", LIBRARY, "gpt-4.1") == price


def test_gpt_4o_cached_input(pricer: Pricer) -> None:
    # gpt-4o: input $2.50, cache read $1.25, output $10 per MTok.
    # 2,000 x 2.5/1e6 = 0.005 + 8,000 x 1.25/1e6 = 0.01 -> input 0.015; 500 x 10/1e6 = 0.005; total 0.02
    price = pricer.price("openai", "gpt-4o", TokenUsage(10_000, 500, cache_read_tokens=8_000), AT)
    assert_price((0.015, 0.005, 0.02), price)


def test_anthropic_cache_write_and_read(pricer: Pricer) -> None:
    # claude-sonnet-4-5 below 200K input: input $3, cache write $3.75 (1.25x), cache read $0.30
    # (0.1x), output $15 per MTok. 50,000 input = 10,000 uncached + 30,000 read + 10,000 written:
    #   10,000 x 3/1e6 = 0.03;  30,000 x 0.3/1e6 = 0.009;  10,000 x 3.75/1e6 = 0.0375  -> 0.0765
    #   2,000 output x 15/1e6 = 0.03;  total 0.1065
    usage = TokenUsage(50_000, 2_000, cache_read_tokens=30_000, cache_write_tokens=10_000)
    price = pricer.price("anthropic", "claude-sonnet-4-5-20250929", usage, AT)
    assert_price((0.0765, 0.03, 0.1065), price)
    assert ("genai-prices", "claude-sonnet-4-5") == (price.source, price.model_ref)


def test_reasoning_tokens_are_output_tokens(pricer: Pricer) -> None:
    # o4-mini: input $1.10, output $4.40 per MTok. 6,000 output of which 5,000 reasoning:
    #   2,000 x 1.1/1e6 = 0.0022;  6,000 x 4.4/1e6 = 0.0264 (reasoning is not added on top);  0.0286
    with_reasoning = pricer.price("openai", "o4-mini", TokenUsage(2_000, 6_000, reasoning_tokens=5_000), AT)
    without_breakdown = pricer.price("openai", "o4-mini", TokenUsage(2_000, 6_000), AT)
    assert_price((0.0022, 0.0264, 0.0286), with_reasoning)
    assert with_reasoning == without_breakdown


def test_all_tokens_repriced_above_200k_input(pricer: Pricer) -> None:
    # claude-sonnet-4-5: above 200,000 input tokens *all* tokens pay input $6, cache write $7.50,
    # cache read $0.60, output $22.50 per MTok; at exactly 200,000 the base rates still apply.
    def cost(usage: TokenUsage) -> Price:
        return pricer.price("anthropic", "claude-sonnet-4-5", usage, AT)

    # 200,000 x 3/1e6 = 0.6;  1,000 x 15/1e6 = 0.015
    assert_price((0.6, 0.015, 0.615), cost(TokenUsage(200_000, 1_000)))
    # 200,001 x 6/1e6 = 1.200006;  1,000 x 22.5/1e6 = 0.0225
    assert_price((1.200006, 0.0225, 1.222506), cost(TokenUsage(200_001, 1_000)))
    # 250,000 input = 130,000 uncached + 100,000 read + 20,000 written:
    #   130,000 x 6/1e6 = 0.78;  100,000 x 0.6/1e6 = 0.06;  20,000 x 7.5/1e6 = 0.15  -> 0.99
    #   the threshold counts cache tokens too (total input), so the tier applies
    usage = TokenUsage(250_000, 1_000, cache_read_tokens=100_000, cache_write_tokens=20_000)
    assert_price((0.99, 0.0225, 1.0125), cost(usage))


def test_gemini_2_5_pro_tier(pricer: Pricer) -> None:
    # gemini-2.5-pro above 200K input: input $2.50, cache read $0.25, output $15 per MTok.
    # 300,000 input of which 100,000 cached: 200,000 x 2.5/1e6 = 0.5 + 100,000 x 0.25/1e6 = 0.025
    # 2,000 output x 15/1e6 = 0.03;  total 0.555
    price = pricer.price("google", "gemini-2.5-pro", TokenUsage(300_000, 2_000, cache_read_tokens=100_000), AT)
    assert_price((0.525, 0.03, 0.555), price)


def test_unknown_model_is_unpriced_never_zero(pricer: Pricer) -> None:
    price = pricer.price(None, "acme-llama-70b", TokenUsage(1_000, 100), AT)
    assert Price(None, None, None, "unpriced", LIBRARY, None) == price
    assert Price(None, None, None, "unpriced", LIBRARY, None) == pricer.price(
        "vllm", "qwen3-coder-local", TokenUsage(1_000, 100), AT
    )


def test_zero_tokens_on_known_model_cost_zero(pricer: Pricer) -> None:
    assert Price(0.0, 0.0, 0.0, "genai-prices", LIBRARY, "gpt-4.1") == pricer.price(
        "openai", "gpt-4.1", TokenUsage(0), AT
    )


def test_free_model_costs_zero_but_audio_only_model_is_unpriced(pricer: Pricer) -> None:
    # genai-prices lists GitHub Copilot's gpt-4o with no prices at all: included in the subscription.
    assert 0.0 == pricer.price("github-copilot", "gpt-4o", TokenUsage(5_000, 500), AT).total_usd
    # whisper is priced per audio hour only: token usage says nothing about its cost.
    assert "unpriced" == pricer.price("groq", "whisper-large-v3", TokenUsage(5_000, 500), AT).source


def test_price_at_the_span_timestamp() -> None:
    # o3 was $10 input / $40 output per MTok until OpenAI cut it to $2 / $8 from 2025-06-10 (UTC).
    # 1,000,000 input, 100,000 output: before 10 + 4 = 14.0;  after 2 + 0.8 = 2.8
    pricer = Pricer()
    usage = TokenUsage(1_000_000, 100_000)
    before = datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC)
    after = datetime(2025, 6, 10, 0, 0, tzinfo=UTC)
    assert_price((10.0, 4.0, 14.0), pricer.price("openai", "o3", usage, before))
    assert_price((2.0, 0.8, 2.8), pricer.price("openai", "o3", usage, after))
    # 01:00 at UTC+2 is still 9 June in UTC; a naive timestamp is read as UTC.
    assert_price(
        (10.0, 4.0, 14.0),
        pricer.price("openai", "o3", usage, datetime(2025, 6, 10, 1, tzinfo=timezone(timedelta(hours=2)))),
    )
    assert_price((2.0, 0.8, 2.8), pricer.price("openai", "o3", usage, datetime(2025, 6, 10, 0, 0)))
    # Two periods, two compiled entries, however many spans fall in each.
    for day in range(30):
        pricer.price("openai", "o3", usage, after + timedelta(days=day))
    assert 2 == pricer.stats().compiled_entries


def test_daily_off_peak_price_and_period_reuse() -> None:
    # deepseek-chat: 00:30-16:30 UTC input $0.27 / output $1.10 per MTok, otherwise the off-peak
    # $0.135 / $0.55. 1M input + 1M output: 0.27 + 1.1 = 1.37 by day, 0.135 + 0.55 = 0.685 at night.
    pricer = Pricer()
    usage = TokenUsage(1_000_000, 1_000_000)
    day = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert_price((0.27, 1.1, 1.37), pricer.price("deepseek", "deepseek-chat", usage, day))
    assert_price((0.135, 0.55, 0.685), pricer.price("deepseek", "deepseek-chat", usage, day.replace(hour=20)))
    assert_price((0.135, 0.55, 0.685), pricer.price("deepseek", "deepseek-chat", usage, day.replace(hour=0, minute=29)))
    assert_price((0.27, 1.1, 1.37), pricer.price("deepseek", "deepseek-chat", usage, day.replace(hour=0, minute=30)))
    # A week of calls reuses the same two compiled entries.
    for hour in range(0, 24 * 7, 5):
        pricer.price("deepseek", "deepseek-chat", usage, day + timedelta(hours=hour))
    assert 2 == pricer.stats().compiled_entries


def test_price_depends_only_on_usage_model_and_time() -> None:
    # A streamed call's usage arrives in its last chunk, a non-streamed one's in the body; once the
    # collector has the same TokenUsage, the price must not depend on cache state or call order.
    usage = TokenUsage(120_000, 3_000, cache_read_tokens=90_000, cache_write_tokens=5_000, reasoning_tokens=1_000)
    calls = [
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("openai", "gpt-4.1"),
        ("google", "gemini-2.5-pro"),
        (None, "o3"),
    ]
    cold = [Pricer().price(provider, model, usage, AT) for provider, model in calls]
    warm_pricer = Pricer()
    for provider, model in reversed(calls * 3):
        warm_pricer.price(provider, model, TokenUsage(7, 7), AT - timedelta(days=400))
    warm = [warm_pricer.price(provider, model, TokenUsage(**_fields(usage)), AT) for provider, model in calls]
    assert cold == warm


def _fields(usage: TokenUsage) -> dict[str, int]:
    return {name: getattr(usage, name) for name in TokenUsage.__slots__}


def test_cache_parts_larger_than_total_are_clamped_never_negative() -> None:
    # A producer passed Anthropic's raw input_tokens (50, excluding cache) with 8,000 read and 2,000
    # written: the total is raised to its parts, 10,000, of which 0 uncached.
    #   8,000 x 0.3/1e6 = 0.0024 + 2,000 x 3.75/1e6 = 0.0075 -> 0.0099;  100 x 15/1e6 = 0.0015
    pricer = Pricer()
    usage = TokenUsage(50, 100, cache_read_tokens=8_000, cache_write_tokens=2_000)
    assert_price((0.0099, 0.0015, 0.0114), pricer.price("anthropic", "claude-sonnet-4-5", usage, AT))
    # Reasoning above output raises output; negative counts count as 0.
    assert_price(
        (0.0, 0.0044, 0.0044), pricer.price("openai", "o4-mini", TokenUsage(0, 10, reasoning_tokens=1_000), AT)
    )
    negative = pricer.price("openai", "gpt-4.1", TokenUsage(-5, -5, cache_read_tokens=-1, cache_write_tokens=-1), AT)
    assert_price((0.0, 0.0, 0.0), negative)
    assert 3 == pricer.stats().clamped_usages


@pytest.mark.parametrize(
    ("provider", "model", "model_ref"),
    [
        # dated and variant names genai-prices matches itself
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        (None, "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        (None, "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("google", "gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        # GenAI provider names mapped to genai-prices ids
        (
            "aws.bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("azure.ai.openai", "gpt-4.1", "gpt-4.1"),
        ("gcp.vertex_ai", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("x_ai", "grok-code-fast-1", "grok-code-fast-1"),
        ("mistral_ai", "mistral-large-latest", "mistral-large"),
        # vendor prefixes dropped when the full name is unknown
        (None, "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("litellm", "openai/gpt-4o", "gpt-4o"),
        # a recognised provider that does not list the model: found by its name across providers
        ("openai", "claude-haiku-4-5", "claude-haiku-4-5"),
        ("ibm.watsonx.ai", "gpt-4.1", "gpt-4.1"),
    ],
)
def test_model_resolution(pricer: Pricer, provider: str | None, model: str, model_ref: str) -> None:
    assert model_ref == pricer.price(provider, model, TokenUsage(1_000, 100), AT).model_ref


def test_azure_is_priced_from_azure_not_openai() -> None:
    # "azure.ai.openai" contains "openai", which genai-prices alone would match to OpenAI.
    pricer = Pricer()
    pricer.price("azure.ai.openai", "gpt-4.1", TokenUsage(1_000), AT)
    assert 0 == pricer.stats().cross_provider
    pricer.price("openai", "claude-haiku-4-5", TokenUsage(1_000), AT)
    assert 1 == pricer.stats().cross_provider


def test_stats_count_hits_and_unpriced() -> None:
    pricer = Pricer()
    for _ in range(10):
        pricer.price("openai", "gpt-4.1", TokenUsage(1_000, 10), AT)
    pricer.price(None, "no-such-model", TokenUsage(1_000, 10), AT)
    stats = pricer.stats()
    assert (2, 1, 9, 0, 1) == (
        stats.models,
        stats.compiled_entries,
        stats.cache_hits,
        stats.library_fallbacks,
        stats.unpriced,
    )


def test_model_cache_is_bounded() -> None:
    pricer = Pricer(max_models=3)
    for index in range(10):
        pricer.price(None, f"unknown-{index}", TokenUsage(1), AT)
    assert 3 == pricer.stats().models


def test_uncompilable_entry_falls_back_to_the_library(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise Uncompilable("test: pretend this shape is unknown")

    compiled = Pricer().price("anthropic", "claude-sonnet-4-5", TokenUsage(250_000, 1_000, 100_000, 20_000), AT)
    monkeypatch.setattr(pricer_module, "compile_price", refuse)
    pricer = Pricer()
    with caplog.at_level(logging.INFO, logger=pricer_module.__name__):
        fallback = pricer.price("anthropic", "claude-sonnet-4-5", TokenUsage(250_000, 1_000, 100_000, 20_000), AT)
    assert_price((0.99, 0.0225, 1.0125), fallback)
    assert (compiled.source, compiled.version, compiled.model_ref) == (
        fallback.source,
        fallback.version,
        fallback.model_ref,
    )
    assert (0, 1) == (pricer.stats().compiled_entries, pricer.stats().library_fallbacks)
    assert "on every call" in caplog.text
