"""Benchmark: µs per priced span, compiled Pricer vs genai-prices' calc_price, on a realistic mix.

Run ``python benchmarks/bench_pricing.py`` (about 3 s). A benchmark runner can call ``main()``,
which returns the results as a dict. The mix imitates AI-coding traffic: mostly Claude and GPT
models, long prompts that are mostly cache reads, some cache writes, reasoning on o-series models,
a few calls above the 200K-token tier, spans spread over a week, providers named as GenAI and
OpenInference instrumentations name them.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from spendgate_collector.pricing import Pricer, TokenUsage
from spendgate_collector.pricing.providers import provider_id_for

CALLS = 5_000
"""Distinct calls in the mix; the compiled path prices all of them each round."""
COMPILED_ROUNDS = 9
LIBRARY_CALLS = 1_500
"""genai-prices takes ~200 µs a call, so it prices only the first calls of the mix each round."""
LIBRARY_ROUNDS = 5

# (weight, span provider, span model, reasoning model?)
MIX = [
    (30, "anthropic", "claude-sonnet-4-5-20250929", False),
    (8, "anthropic", "claude-opus-4-1-20250805", False),
    (6, "anthropic", "claude-haiku-4-5", False),
    (8, "aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", False),
    (10, "openai", "gpt-4.1-2025-04-14", False),
    (8, "openai", "gpt-5", True),
    (6, "openai", "o4-mini", True),
    (3, "azure.ai.openai", "gpt-4.1", False),
    (8, "google", "gemini-2.5-pro", True),
    (5, None, "gemini-2.5-flash", False),
    (4, "deepseek", "deepseek-chat", False),
    (4, "x_ai", "grok-code-fast-1", True),
]


def build_calls(seed: int = 7) -> list[tuple[str | None, str, TokenUsage, datetime]]:
    """The mix of (provider, model, usage, timestamp) both paths price."""
    rng = random.Random(seed)
    weights = [weight for weight, *_ in MIX]
    start = datetime(2025, 11, 3, tzinfo=UTC)
    calls = []
    for _ in range(CALLS):
        _, provider, model, reasoning_model = rng.choices(MIX, weights)[0]
        total = rng.randint(210_000, 400_000) if rng.random() < 0.03 else rng.randint(2_000, 150_000)
        cache_read = int(total * rng.uniform(0.7, 0.97)) if rng.random() < 0.85 else 0
        cache_write = int((total - cache_read) * rng.uniform(0, 0.8)) if rng.random() < 0.3 else 0
        output = rng.randint(50, 6_000)
        reasoning = int(output * rng.uniform(0.3, 0.9)) if reasoning_model else 0
        at = start + timedelta(seconds=rng.randint(0, 7 * 86_400))
        calls.append((provider, model, TokenUsage(total, output, cache_read, cache_write, reasoning), at))
    return calls


def _time_compiled(pricer: Pricer, calls: list[tuple[str | None, str, TokenUsage, datetime]]) -> list[float]:
    price = pricer.price
    per_call = []
    for _ in range(COMPILED_ROUNDS):
        began = time.perf_counter()
        for provider, model, usage, at in calls:
            price(provider, model, usage, at)
        per_call.append((time.perf_counter() - began) / len(calls) * 1e6)
    return per_call


def _time_library(
    calls: list[tuple[str | None, str, TokenUsage, datetime]], provider_ids: list[str | None]
) -> list[float]:
    from genai_prices import Usage, calc_price

    per_call = []
    for _ in range(LIBRARY_ROUNDS):
        began = time.perf_counter()
        for (_, model, usage, at), provider_id in zip(calls, provider_ids, strict=True):
            calc_price(
                Usage(
                    input_tokens=usage.input_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                    output_reasoning_tokens=usage.reasoning_tokens,
                ),
                model,
                provider_id=provider_id,
                genai_request_timestamp=at,
            )
        per_call.append((time.perf_counter() - began) / len(calls) * 1e6)
    return per_call


def main() -> dict[str, object]:
    """Run the benchmark; return medians (µs per call), their ratio, and the Pricer's stats."""
    from genai_prices import data_snapshot

    calls = build_calls()
    pricer = Pricer()

    # Cold pass: every (provider, model, period) is resolved, compiled and verified once.
    began = time.perf_counter()
    for provider, model, usage, at in calls:
        pricer.price(provider, model, usage, at)
    cold_ms = (time.perf_counter() - began) * 1e3

    compiled = statistics.median(_time_compiled(pricer, calls))
    # genai-prices gets the provider ids it knows (mapped as the Pricer maps them), so its time is
    # pricing time, not failed provider lookups.
    providers = data_snapshot.get_snapshot().providers
    library_calls = calls[:LIBRARY_CALLS]
    library = statistics.median(
        _time_library(library_calls, [provider_id_for(provider, providers) for provider, *_ in library_calls])
    )
    return {
        "calls": len(calls),
        "compiled_us_per_call": round(compiled, 3),
        "library_us_per_call": round(library, 1),
        "speedup": round(library / compiled, 1),
        "compiled_calls_per_s": round(1e6 / compiled),
        "cold_first_pass_ms": round(cold_ms, 1),
        "stats": asdict(pricer.stats()),
    }


if __name__ == "__main__":
    results = main()
    print(f"pricing {results['calls']:,} calls (realistic mix of {len(MIX)} models), median µs per call:")
    print(
        f"  compiled Pricer.price:     {results['compiled_us_per_call']:8.2f} µs"
        f"  ({results['compiled_calls_per_s']:,} calls/s)"
    )
    print(f"  genai-prices calc_price:   {results['library_us_per_call']:8.1f} µs")
    print(f"  speedup:                   {results['speedup']:8.1f}x")
    print(f"  cold first pass (resolve + compile + verify): {results['cold_first_pass_ms']} ms")
    print(f"  stats: {results['stats']}")
