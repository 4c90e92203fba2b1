"""Fixtures for SDK tests: a tracer provider whose finished spans land in memory, spendgate attached to it.

Each test gets a fresh ``TracerProvider`` with a ``SimpleSpanProcessor`` into an
``InMemorySpanExporter`` (so a span is readable as soon as it ends, no flush needed) and
``spendgate.configure(tracer_provider=...)`` attached to it; the handle is shut down afterwards so
the next test can configure again. Nothing here touches the global tracer provider: tests that
need the global one run in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spendgate
from spendgate._setup import SpendgateHandle
from spendgate_semconv import attributes as sc


@dataclass
class Traced:
    """A provider with spendgate attached, its tracer and the spans it finished."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    handle: SpendgateHandle

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("tests.sdk")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def llm_span(self, name: str = "chat test", **attributes: Any) -> dict[str, Any]:
        """Start and end one OpenInference-style LLM span here; return its final attributes."""
        with self.tracer.start_as_current_span(
            name, attributes={sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_LLM, **attributes}
        ) as span:
            pass
        return dict(span.attributes)  # type: ignore[attr-defined]


def attribution_of(attributes: Any) -> dict[str, Any]:
    """The attribution attributes of a span, for exact comparisons (metadata left out)."""
    keys = (
        sc.USER_ID,
        sc.VCS_REPOSITORY_NAME,
        sc.VCS_REF_HEAD_NAME,
        sc.SPENDGATE_TEAM,
        sc.SPENDGATE_COST_CENTER,
        sc.SPENDGATE_FEATURE,
        sc.SPENDGATE_REPO_SOURCE,
        sc.TAG_TAGS,
    )
    out = {k: attributes[k] for k in keys if k in attributes}
    if sc.TAG_TAGS in out:
        out[sc.TAG_TAGS] = list(out[sc.TAG_TAGS])
    return out


@pytest.fixture
def traced() -> Iterator[Traced]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = spendgate.configure(tracer_provider=provider)
    try:
        yield Traced(provider, exporter, handle)
    finally:
        handle.shutdown()
        provider.shutdown()
