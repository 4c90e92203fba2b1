"""The one lean record the collector keeps per LLM span, whatever instrumentation produced it.

Normalisation fills everything but the cost fields; pricing fills those. The store writes it as one
``spend`` row and folds it into the rollups. No prompt or completion content ever lands here.
"""

from __future__ import annotations

from dataclasses import dataclass

NANOS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(slots=True)
class SpendRecord:
    """One priced (or unpriced) LLM call, attributed to who, where and what for."""

    trace_id: str
    """32 lowercase hex digits."""
    span_id: str
    """16 lowercase hex digits."""
    start_ns: int
    end_ns: int
    """Span end, Unix nanoseconds: the instant the call is priced at and the UTC day it rolls into."""
    model: str | None
    """Model that served the call; ``None`` when no attribute named one (then it is unpriced)."""
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    repo_url: str | None = None
    branch: str | None = None
    repo_source: str | None = None
    feature: str | None = None
    key_id: str | None = None
    provider: str | None = None
    requested_model: str | None = None
    input_tokens: int = 0
    """Total input tokens, cache reads and writes included."""
    output_tokens: int = 0
    """Total output tokens, reasoning included."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: str | None = None
    status: str = "ok"
    """``ok`` or ``error``."""
    error_type: str | None = None
    ttft_ms: float | None = None
    service_name: str | None = None
    cost_usd: float | None = None
    """USD cost; ``None`` when the model is unpriced (never a silent zero)."""
    cost_source: str | None = None
    price_version: str | None = None
    # Not stored: the exporters forward them as ``llm.cost.prompt`` / ``llm.cost.completion``.
    cost_input_usd: float | None = None
    """USD cost of the input tokens (cache parts included); ``None`` when unpriced."""
    cost_output_usd: float | None = None
    """USD cost of the output tokens (reasoning included); ``None`` when unpriced."""

    @property
    def day_number(self) -> int:
        """Days since 1970-01-01 (UTC) of the span's end."""
        return self.end_ns // NANOS_PER_DAY
