"""Build LLM spans for collector tests: OpenTelemetry SDK ``ReadableSpan``s and OTLP protobuf/JSON bodies.

Spans carry spendgate's attributes by default (``ours``); ``openinference`` and ``gen_ai`` give the
attribute sets other instrumentations emit. Ids and times are explicit so tests can assert exact rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from spendgate_semconv import attributes as sc

RESOURCE = Resource.create({"service.name": "spendgate-proxy"})
SCOPE = InstrumentationScope("spendgate.proxy", "0.1.0")


def ns(iso: str) -> int:
    """``2026-11-03T10:00:00`` (UTC) → Unix nanoseconds."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def ours(
    *,
    model: str = "gpt-4o",
    provider: str = "openai",
    developer: str | None = "ana@acme.com",
    team: str | None = "platform",
    cost_center: str | None = "CC-1001",
    repo: str | None = "acme-api",
    feature: str | None = "agent",
    input_tokens: int = 1000,
    output_tokens: int = 100,
    cache_read: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    key_id: str | None = None,
    stream: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Attributes of a spendgate proxy span (OpenInference + GenAI + spendgate.*), ``None`` values left out."""
    attrs: dict[str, Any] = {
        sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_LLM,
        sc.LLM_SYSTEM: provider,
        sc.LLM_PROVIDER: provider,
        sc.LLM_MODEL_NAME: model,
        sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.GEN_AI_RESPONSE_MODEL: model,
        sc.LLM_TOKEN_COUNT_PROMPT: input_tokens,
        sc.LLM_TOKEN_COUNT_COMPLETION: output_tokens,
        sc.LLM_TOKEN_COUNT_TOTAL: input_tokens + output_tokens,
        sc.LLM_TOKEN_COUNT_PROMPT_CACHE_READ: cache_read,
        sc.LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE: cache_write,
        sc.LLM_TOKEN_COUNT_COMPLETION_REASONING: reasoning,
        sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: cache_write,
        sc.USER_ID: developer,
        sc.SPENDGATE_TEAM: team,
        sc.SPENDGATE_COST_CENTER: cost_center,
        sc.VCS_REPOSITORY_NAME: repo,
        sc.SPENDGATE_REPO_SOURCE: sc.RepoSource.HEADER if repo else None,
        sc.SPENDGATE_FEATURE: feature,
        sc.SPENDGATE_KEY_ID: key_id,
        sc.SPENDGATE_MODEL_REQUESTED: model,
        sc.SPENDGATE_STREAM: stream,
        sc.SPENDGATE_TTFT_MS: 123.5 if stream else None,
        sc.SPENDGATE_USAGE_SOURCE: sc.UsageSource.PROVIDER,
        sc.SPENDGATE_HTTP_STATUS: 200,
        **extra,
    }
    return {k: v for k, v in attrs.items() if v is not None}


def span(
    trace_id: int,
    span_id: int,
    attributes: dict[str, Any],
    *,
    end: str = "2026-11-03T10:00:00",
    duration_ms: int = 1500,
    error: bool = False,
    resource: Resource = RESOURCE,
    name: str | None = None,
) -> ReadableSpan:
    """A finished span with explicit ids and end time (UTC ISO, no offset)."""
    end_ns = ns(end)
    return ReadableSpan(
        name=name or f"chat {attributes.get(sc.LLM_MODEL_NAME, 'model')}",
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        parent=None,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, "upstream failed") if error else Status(StatusCode.OK),
        start_time=end_ns - duration_ms * 1_000_000,
        end_time=end_ns,
        instrumentation_scope=SCOPE,
    )


def protobuf_body(spans: list[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` bytes an OTLP exporter would send for ``spans``."""
    return encode_spans(spans).SerializeToString()


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP/JSON sends int64 as a string
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def json_body(items: list[tuple[int, int, dict[str, Any], str]], service: str = "json-client") -> bytes:
    """A hand-built OTLP/JSON request: hex ids, camelCase names, integer enums.

    ``items`` are ``(trace_id, span_id, attributes, end_iso)``.
    """
    spans = []
    for trace_id, span_id, attributes, end in items:
        end_ns = ns(end)
        spans.append(
            {
                "traceId": f"{trace_id:032x}",
                "spanId": f"{span_id:016x}",
                "name": "chat",
                "kind": 3,  # SPAN_KIND_CLIENT, as an integer enum
                "startTimeUnixNano": str(end_ns - 1_000_000_000),
                "endTimeUnixNano": str(end_ns),
                "attributes": [{"key": k, "value": _json_value(v)} for k, v in attributes.items()],
                "status": {"code": 1},
            }
        )
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "hand-built"}, "spans": spans}],
            }
        ]
    }
    return json.dumps(doc).encode()
