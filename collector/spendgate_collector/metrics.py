"""Prometheus counters of the collector, in a registry of their own (never the process-global one).

Keeping a dedicated ``CollectorRegistry`` means two collectors in one process (tests, ``spendgate up``
next to an app that exports its own metrics) never clash on metric names. ``render()`` gives the
text exposition served at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class CollectorMetrics:
    """The collector's counters; safe to update from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.spans_received = Counter(
            "spendgate_collector_spans_received", "Spans received over OTLP, of every kind.", registry=r
        )
        self.llm_spans = Counter(
            "spendgate_collector_llm_spans", "LLM spans normalised (before de-duplication).", registry=r
        )
        self.non_llm_spans = Counter(
            "spendgate_collector_non_llm_spans", "Spans that are not LLM calls, ignored for spend.", registry=r
        )
        self.priced = Counter("spendgate_collector_spans_priced", "LLM spans stored with a price.", registry=r)
        self.unpriced = Counter(
            "spendgate_collector_spans_unpriced", "LLM spans stored without a price (unknown model).", registry=r
        )
        self.rejected = Counter(
            "spendgate_collector_spans_rejected", "Malformed spans rejected (OTLP partial success).", registry=r
        )
        self.duplicates = Counter(
            "spendgate_collector_spans_duplicate", "LLM spans already stored, ignored (retries).", registry=r
        )
        self.cost_usd = Counter(
            "spendgate_collector_cost_usd", "USD cost of stored LLM spans, by team.", ["team"], registry=r
        )
        self.requests = Counter(
            "spendgate_collector_export_requests",
            "OTLP export requests answered, by receiver and outcome.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.queue_bytes = Gauge(
            "spendgate_collector_queue_bytes", "OTLP payload bytes waiting for the store.", registry=r
        )
        self.batch_seconds = Histogram(
            "spendgate_collector_batch_seconds",
            "Time to normalise, price and durably commit one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

    def render(self) -> bytes:
        """Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
