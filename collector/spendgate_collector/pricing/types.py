"""Value objects of pricing: the token usage of one call, its price, and the pricer's counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens one LLM call was billed for, with totals that include their parts.

    This is how OpenInference (``llm.token_count.*``), the GenAI conventions (``gen_ai.usage.*``) and
    OpenAI (``prompt_tokens``) count. Anthropic's raw ``input_tokens`` excludes the cache parts: add
    ``cache_creation_input_tokens`` and ``cache_read_input_tokens`` to it before building this.
    """

    input_tokens: int
    """All input tokens, cache reads and cache writes included."""
    output_tokens: int = 0
    """All output tokens, reasoning tokens included."""
    cache_read_tokens: int = 0
    """Part of ``input_tokens`` served from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Part of ``input_tokens`` written to the provider's prompt cache."""
    reasoning_tokens: int = 0
    """Part of ``output_tokens`` spent on hidden reasoning; priced at the output rate unless genai-prices
    gives the model a reasoning rate of its own (only Perplexity's sonar-deep-research has one)."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD cost of one call, and where the numbers came from.

    ``input_usd + output_usd == total_usd`` except for the few models with a per-request fee, which
    only the total carries (as genai-prices reports it).
    """

    input_usd: float | None
    """Cost of all input tokens, cache parts included; None when unpriced."""
    output_usd: float | None
    """Cost of all output tokens, reasoning included; None when unpriced."""
    total_usd: float | None
    """Cost of the call; None when unpriced (never a silent 0.0)."""
    source: str
    """``genai-prices``, ``override`` (a custom model or a discount applied) or ``unpriced``."""
    version: str
    """Price table the numbers come from, e.g. ``genai-prices-0.2.3``, ``override:1a2b3c4d`` or
    ``genai-prices-0.2.3+override:1a2b3c4d`` for a discounted library price."""
    model_ref: str | None
    """Model id the price was found under (genai-prices' id or the override's name); None when unpriced."""


@dataclass(frozen=True, slots=True)
class PricerStats:
    """Snapshot of a ``Pricer``'s counters, for ``/healthz`` and the dashboard."""

    models: int
    """(provider, model) pairs resolved so far (priced or not) and still cached."""
    compiled_entries: int
    """Price functions compiled from genai-prices entries or overrides."""
    cache_hits: int
    """``price()`` calls answered by an entry resolved earlier, without asking genai-prices to resolve."""
    library_fallbacks: int
    """``price()`` calls priced by genai-prices' own ``calc_price`` (a price shape the compiler skips)."""
    unpriced: int
    """``price()`` calls for a model nobody prices."""
    overrides: int
    """``price()`` calls priced by a custom model or with a discount."""
    cross_provider: int
    """(provider, model) pairs found only under another provider than the span named."""
    clamped_usages: int
    """``price()`` calls whose usage was inconsistent (parts larger than totals, negatives) and was clamped."""
