"""Tests of price overrides: negotiated discounts, custom models, and the file's validation."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spendgate_collector.pricing import (
    Price,
    PriceOverridesError,
    Pricer,
    TokenUsage,
    load_price_overrides,
    parse_price_overrides,
)
from tests.collector.test_pricing import LIBRARY

AT = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)

OVERRIDES = """\
discounts:
  - provider: anthropic
    model: "claude-*"
    multiplier: 0.85
models:
  - model: acme-llama-70b
    provider: vllm
    input_per_mtok: 0.60
    output_per_mtok: 0.80
    cache_read_per_mtok: 0.06
    cache_write_per_mtok: 0.75
  - model: "team-*-8b"
    input_per_mtok: 0.10
    output_per_mtok: 0.20
  - model: gpt-4.1
    provider: openai
    input_per_mtok: 1.00
    output_per_mtok: 4.00
"""
SHA8 = hashlib.sha256(OVERRIDES.encode()).hexdigest()[:8]


def usd(value: float) -> object:
    return pytest.approx(value, abs=1e-12, rel=0)


@pytest.fixture
def overrides_file(tmp_path: Path) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(OVERRIDES)
    return path


@pytest.fixture
def pricer(overrides_file: Path) -> Pricer:
    return Pricer(load_price_overrides(overrides_file))


def test_discount_multiplies_library_price(pricer: Pricer) -> None:
    # claude-sonnet-4-5 list price (see test_pricing.py): input 0.0765, output 0.03, total 0.1065.
    # x 0.85: 0.065025, 0.0255, 0.090525
    usage = TokenUsage(50_000, 2_000, cache_read_tokens=30_000, cache_write_tokens=10_000)
    price = pricer.price("anthropic", "claude-sonnet-4-5-20250929", usage, AT)
    assert (usd(0.065025), usd(0.0255), usd(0.090525)) == (price.input_usd, price.output_usd, price.total_usd)
    assert ("override", f"{LIBRARY}+override:{SHA8}", "claude-sonnet-4-5") == (
        price.source,
        price.version,
        price.model_ref,
    )


def test_discount_does_not_leak_to_other_providers(pricer: Pricer) -> None:
    # An Anthropic contract does not discount Claude bought through Bedrock, nor OpenAI models.
    bedrock = pricer.price("aws.bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", TokenUsage(1_000), AT)
    assert "genai-prices" == bedrock.source
    # gpt-4o: 1,000 x 2.5/1e6 = 0.0025, list price
    assert Price(0.0025, 0.0, 0.0025, "genai-prices", LIBRARY, "gpt-4o") == pricer.price(
        "openai", "gpt-4o", TokenUsage(1_000), AT
    )


def test_custom_model(pricer: Pricer) -> None:
    # acme-llama-70b: input $0.60, cache read $0.06, cache write $0.75, output $0.80 per MTok.
    # 100,000 input = 50,000 uncached + 40,000 read + 10,000 written:
    #   50,000 x 0.6/1e6 = 0.03;  40,000 x 0.06/1e6 = 0.0024;  10,000 x 0.75/1e6 = 0.0075  -> 0.0399
    #   5,000 output x 0.8/1e6 = 0.004;  total 0.0439
    usage = TokenUsage(100_000, 5_000, cache_read_tokens=40_000, cache_write_tokens=10_000)
    price = pricer.price("vllm", "acme-llama-70b", usage, AT)
    assert (usd(0.0399), usd(0.004), usd(0.0439)) == (price.input_usd, price.output_usd, price.total_usd)
    assert ("override", f"override:{SHA8}", "acme-llama-70b") == (price.source, price.version, price.model_ref)
    # Its provider must match: the same name served elsewhere is not this custom model.
    assert "unpriced" == pricer.price("ollama", "acme-llama-70b", usage, AT).source


def test_custom_model_cache_rates_default_to_input_rate(pricer: Pricer) -> None:
    # team-*-8b: input $0.10, output $0.20 per MTok, no cache rates: 1,000,000 input (half cached,
    # a quarter written) x 0.1/1e6 = 0.1;  500,000 output x 0.2/1e6 = 0.1
    usage = TokenUsage(1_000_000, 500_000, cache_read_tokens=500_000, cache_write_tokens=250_000)
    price = pricer.price(None, "Team-Search-8B", usage, AT)
    assert (usd(0.1), usd(0.1), usd(0.2)) == (price.input_usd, price.output_usd, price.total_usd)


def test_custom_model_wins_over_the_library(pricer: Pricer) -> None:
    # gpt-4.1 at a negotiated $1 / $4 per MTok instead of $2 / $8: 10,000 x 1/1e6 + 1,000 x 4/1e6
    price = pricer.price("openai", "gpt-4.1", TokenUsage(10_000, 1_000), AT)
    assert (usd(0.01), usd(0.004), usd(0.014)) == (price.input_usd, price.output_usd, price.total_usd)
    assert "override" == price.source
    assert 1 == pricer.stats().overrides


def test_unpriced_version_names_the_overrides(pricer: Pricer) -> None:
    assert f"{LIBRARY}+override:{SHA8}" == pricer.price(None, "nope", TokenUsage(1), AT).version


def test_empty_file_means_no_overrides() -> None:
    overrides = parse_price_overrides("")
    assert ((), ()) == (overrides.discounts, overrides.models)
    assert ((), ()) == (parse_price_overrides("discounts:\nmodels:\n").discounts, ())


def test_every_bad_field_is_named_at_once() -> None:
    text = """\
discounts:
  - provider: anthropic
    multiplier: 0
models:
  - model: a
    input_per_mtok: -1
    output_per_mtok: "0.8"
  - model: b
    input_per_mtok: 1
    output_per_mtok: 1
    cache_read_per_mtoks: 0.1
  - model: a
    input_per_mtok: 1
    output_per_mtok: 1
"""
    with pytest.raises(PriceOverridesError) as caught:
        parse_price_overrides(text, source="bad.yaml")
    problems = caught.value.problems
    assert [
        "discounts[0].multiplier: Input should be greater than 0",
        "models[0].input_per_mtok: Input should be greater than or equal to 0",
        "models[0].output_per_mtok: Input should be a valid number",
        "models[1].cache_read_per_mtoks: Extra inputs are not permitted",
    ] == problems
    assert str(caught.value).startswith("invalid price overrides in bad.yaml: discounts[0].multiplier")


def test_duplicate_custom_model_is_an_error() -> None:
    text = """\
models:
  - {model: a, input_per_mtok: 1, output_per_mtok: 1}
  - {model: A, input_per_mtok: 2, output_per_mtok: 2}
"""
    with pytest.raises(PriceOverridesError, match=r"models\[1\]\.model: duplicate of models\[0\]"):
        parse_price_overrides(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("models: [1, 2]", "models[0]: Input should be a valid dictionary"),
        ("- a\n- b\n", "(file): Input should be a valid dictionary"),
        ("models:\n  - model: x\n    output_per_mtok: 1\n", "models[0].input_per_mtok: Field required"),
        ("discounts:\n  - multiplier: .inf\n", "discounts[0].multiplier: Input should be a finite number"),
        ("models: [", "not valid YAML"),
    ],
)
def test_malformed_files(text: str, problem: str) -> None:
    with pytest.raises(PriceOverridesError) as caught:
        parse_price_overrides(text)
    assert problem in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PriceOverridesError, match="cannot read file"):
        load_price_overrides(tmp_path / "absent.yaml")
