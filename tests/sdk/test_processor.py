"""spendgate.processor: which spans get attribution, what they get, and that on_start never raises."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import spendgate
from spendgate.context import Attribution
from spendgate.processor import SpendgateSpanProcessor, is_llm_span, stamp_for
from spendgate_semconv import attributes as sc
from tests.sdk.conftest import Traced, attribution_of

ANA = {
    sc.USER_ID: "ana@acme.com",
    sc.VCS_REPOSITORY_NAME: "acme-api",
    sc.SPENDGATE_REPO_SOURCE: "sdk",
    sc.SPENDGATE_FEATURE: "rag",
}


def test_llm_span_gets_every_field_and_metadata(traced: Traced) -> None:
    with spendgate.attribute(
        user="ana@acme.com",
        repo="acme-api",
        branch="main",
        team="search",
        cost_center="cc-42",
        feature="rag",
        tags=["nightly"],
    ):
        attrs = traced.llm_span()
    assert attribution_of(attrs) == {
        sc.USER_ID: "ana@acme.com",
        sc.VCS_REPOSITORY_NAME: "acme-api",
        sc.SPENDGATE_REPO_SOURCE: "sdk",
        sc.VCS_REF_HEAD_NAME: "main",
        sc.SPENDGATE_TEAM: "search",
        sc.SPENDGATE_COST_CENTER: "cc-42",
        sc.SPENDGATE_FEATURE: "rag",
        sc.TAG_TAGS: ["nightly"],
    }
    assert json.loads(attrs[sc.METADATA]) == {
        "user": "ana@acme.com",
        "team": "search",
        "cost_center": "cc-42",
        "repo": "acme-api",
        "branch": "main",
        "feature": "rag",
    }
    assert traced.handle.stats().spans_stamped == 1


@pytest.mark.parametrize(
    "start_attributes",
    [
        {sc.OPENINFERENCE_SPAN_KIND: "LLM"},
        {sc.OPENINFERENCE_SPAN_KIND: "EMBEDDING"},
        {sc.GEN_AI_OPERATION_NAME: "chat"},
        {sc.GEN_AI_SYSTEM: "openai", "llm.request.type": "chat"},  # OpenLLMetry's start attributes
        {"gen_ai.agent.name": "planner"},
    ],
)
def test_llm_spans_are_recognised_at_start(traced: Traced, start_attributes: dict[str, Any]) -> None:
    with (
        spendgate.attribute(user="ana@acme.com"),
        traced.tracer.start_as_current_span("x", attributes=start_attributes),
    ):
        pass
    assert traced.spans()[0].attributes[sc.USER_ID] == "ana@acme.com"  # type: ignore[index]


@pytest.mark.parametrize(
    "start_attributes",
    [{}, {"http.request.method": "POST"}, {sc.OPENINFERENCE_SPAN_KIND: "CHAIN"}, {sc.OPENINFERENCE_SPAN_KIND: "TOOL"}],
)
def test_other_spans_are_left_alone(traced: Traced, start_attributes: dict[str, Any]) -> None:
    with (
        spendgate.attribute(user="ana@acme.com"),
        traced.tracer.start_as_current_span("x", attributes=start_attributes),
    ):
        pass
    assert start_attributes == dict(traced.spans()[0].attributes or {})


def test_gen_ai_attributes_set_after_start_are_too_late(traced: Traced) -> None:
    # Documented limit: on_start is the only moment a processor may write.
    with spendgate.attribute(user="ana@acme.com"), traced.tracer.start_as_current_span("x") as span:
        span.set_attribute(sc.GEN_AI_OPERATION_NAME, "chat")
    assert sc.USER_ID not in (traced.spans()[0].attributes or {})


def test_existing_attributes_win_metadata_merges_tags_union(traced: Traced) -> None:
    with spendgate.attribute(user="ana@acme.com", repo="acme-api", feature="rag", tags=["sdk", "shared"]):
        attrs = traced.llm_span(
            **{
                sc.USER_ID: "set-by-instrumentation",
                sc.VCS_REPOSITORY_NAME: "from-app",
                sc.METADATA: json.dumps({"feature": "theirs", "run": 7}),
                sc.TAG_TAGS: ["shared", "theirs"],
            }
        )
    assert attribution_of(attrs) == {
        sc.USER_ID: "set-by-instrumentation",
        sc.VCS_REPOSITORY_NAME: "from-app",  # and no repo.source: the repo is not ours
        sc.SPENDGATE_FEATURE: "rag",
        sc.TAG_TAGS: ["shared", "theirs", "sdk"],
    }
    assert json.loads(attrs[sc.METADATA]) == {"feature": "theirs", "run": 7, "user": "ana@acme.com", "repo": "acme-api"}


def test_non_object_metadata_is_left_alone(traced: Traced) -> None:
    with spendgate.attribute(user="ana@acme.com"):
        attrs = traced.llm_span(**{sc.METADATA: "not json"})
    assert attrs[sc.METADATA] == "not json"
    assert attrs[sc.USER_ID] == "ana@acme.com"


def test_configure_defaults_fill_gaps_and_blocks_override(traced: Traced) -> None:
    spendgate.configure(team="search", repo="acme-api", cost_center="cc-1")
    assert attribution_of(traced.llm_span()) == {
        sc.SPENDGATE_TEAM: "search",
        sc.VCS_REPOSITORY_NAME: "acme-api",
        sc.SPENDGATE_REPO_SOURCE: "sdk",
        sc.SPENDGATE_COST_CENTER: "cc-1",
    }
    with spendgate.attribute(user="ana@acme.com", team="platform"):
        assert attribution_of(traced.llm_span()) == {
            sc.USER_ID: "ana@acme.com",
            sc.SPENDGATE_TEAM: "platform",
            sc.VCS_REPOSITORY_NAME: "acme-api",
            sc.SPENDGATE_REPO_SOURCE: "sdk",
            sc.SPENDGATE_COST_CENTER: "cc-1",
        }


def test_no_attribution_anywhere_leaves_span_untouched(traced: Traced) -> None:
    attrs = traced.llm_span()
    assert attrs == {sc.OPENINFERENCE_SPAN_KIND: "LLM"}
    assert traced.handle.stats().spans_stamped == 0


def test_incoming_baggage_is_the_fallback(traced: Traced) -> None:
    ctx = baggage.set_baggage("spendgate.user", "ana@acme.com")
    ctx = baggage.set_baggage("spendgate.feature", "rag", ctx)
    token = otel_context.attach(ctx)
    try:
        first = traced.llm_span()
        second = traced.llm_span()
    finally:
        otel_context.detach(token)
    assert attribution_of(first) == {sc.USER_ID: "ana@acme.com", sc.SPENDGATE_FEATURE: "rag"}
    assert attribution_of(first) == attribution_of(second)


def test_baggage_can_be_ignored() -> None:
    processor = SpendgateSpanProcessor(read_baggage=False)
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(processor)
    token = otel_context.attach(baggage.set_baggage("spendgate.user", "mallory@evil.example"))
    try:
        with provider.get_tracer("t").start_as_current_span("x", attributes={sc.OPENINFERENCE_SPAN_KIND: "LLM"}) as s:
            pass
    finally:
        otel_context.detach(token)
    assert sc.USER_ID not in s.attributes  # type: ignore[attr-defined]


def test_explicit_parent_context_is_used(traced: Traced) -> None:
    # A span started with context=... takes attribution from that context, not from the current one.
    with spendgate.attribute(user="ana@acme.com"):
        ctx = otel_context.get_current()
    llm = {sc.OPENINFERENCE_SPAN_KIND: "LLM"}
    with (
        spendgate.attribute(user="bob@acme.com"),
        traced.tracer.start_as_current_span("x", context=ctx, attributes=llm),
    ):
        pass
    assert traced.spans()[0].attributes[sc.USER_ID] == "ana@acme.com"  # type: ignore[index]


class _ExplodingSpan:
    """Stands in for an SDK span whose attribute access fails."""

    @property
    def attributes(self) -> Any:
        raise RuntimeError("broken span")


def test_on_start_never_raises_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    processor = SpendgateSpanProcessor(Attribution(team="search"))
    with caplog.at_level(logging.WARNING, logger="spendgate.processor"):
        for _ in range(3):
            processor.on_start(_ExplodingSpan())  # type: ignore[arg-type]
    assert processor.stats().errors == 3
    assert sum("could not attribute" in r.getMessage() for r in caplog.records) == 1


def test_disabled_processor_does_nothing(traced: Traced) -> None:
    traced.handle.processor.enabled = False
    with spendgate.attribute(user="ana@acme.com"):
        assert traced.llm_span() == {sc.OPENINFERENCE_SPAN_KIND: "LLM"}


def test_stamp_and_detection_helpers() -> None:
    assert stamp_for(Attribution()).pairs == ()
    stamp = stamp_for(Attribution(feature="rag"))
    assert stamp.pairs == ((sc.SPENDGATE_FEATURE, "rag"), (sc.METADATA, '{"feature":"rag"}'))
    assert stamp.attributes == {sc.SPENDGATE_FEATURE: "rag", sc.METADATA: '{"feature":"rag"}'}
    assert not is_llm_span({})
    assert not is_llm_span(None)
    assert is_llm_span({"gen_ai.usage.input_tokens": 1})
