"""OTLP in over real gRPC and HTTP (official OpenTelemetry exporters, hand-built JSON, gzip), with
duplicates, retries, partial success and back-pressure; asserting the exact rows and rollups stored.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import gzip
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from spendgate_semconv import attributes as sc
from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.spans import json_body, ours, protobuf_body, span

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

# Three LLM calls and one plain HTTP span. Costs (custom model rates in conftest.PRICES_YAML):
#   A acme-coder: (1000-400 input x $2 + 400 cache read x $0.20 + 200 output x $8) / 1e6 = $0.00288
#   B acme-coder: (2000 x $2 + 100 x $8) / 1e6 = $0.0048
#   C acme-mini:  (10000 x $0.50 + 1000 x $1.50) / 1e6 = $0.0065
A_ATTRS = ours(model="acme-coder", provider="acme", input_tokens=1000, cache_read=400, output_tokens=200)
B_ATTRS = ours(model="acme-coder", provider="acme", input_tokens=2000, output_tokens=100, feature="chat")
C_ATTRS = ours(
    model="acme-mini",
    provider="acme",
    developer="bo@acme.com",
    team="data",
    cost_center="CC-2002",
    repo="acme-web",
    input_tokens=10_000,
    output_tokens=1000,
)
A = span(0xA1, 0x01, A_ATTRS, end="2026-11-03T10:00:00")
B = span(0xA1, 0x02, B_ATTRS, end="2026-11-03T11:00:00")
C = span(0xB2, 0x03, C_ATTRS, end="2026-11-04T09:00:00")
NOT_LLM = span(0xC3, 0x04, {"http.request.method": "GET", "url.path": "/healthz"}, name="GET /healthz")

EXPECTED_ROWS = [
    {
        "trace_id": f"{0xA1:032x}",
        "span_id": f"{0x01:016x}",
        "developer": "ana@acme.com",
        "team": "platform",
        "repo": "acme-api",
        "feature": "agent",
        "model": "acme-coder",
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 400,
        "cost_usd": pytest.approx(0.00288, abs=1e-12),
        "cost_source": "override",
    },
    {
        "trace_id": f"{0xA1:032x}",
        "span_id": f"{0x02:016x}",
        "developer": "ana@acme.com",
        "team": "platform",
        "repo": "acme-api",
        "feature": "chat",
        "model": "acme-coder",
        "input_tokens": 2000,
        "output_tokens": 100,
        "cache_read_tokens": 0,
        "cost_usd": pytest.approx(0.0048, abs=1e-12),
        "cost_source": "override",
    },
    {
        "trace_id": f"{0xB2:032x}",
        "span_id": f"{0x03:016x}",
        "developer": "bo@acme.com",
        "team": "data",
        "repo": "acme-web",
        "feature": "agent",
        "model": "acme-mini",
        "input_tokens": 10_000,
        "output_tokens": 1000,
        "cache_read_tokens": 0,
        "cost_usd": pytest.approx(0.0065, abs=1e-12),
        "cost_source": "override",
    },
]

_ZERO = {"errors": 0, "unpriced_requests": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}
_ZERO_UNPRICED = {"unpriced_input_tokens": 0, "unpriced_output_tokens": 0}
EXPECTED_DAILY = [
    {
        "day": "2026-11-03",
        "developer": "ana@acme.com",
        "team": "platform",
        "cost_center": "CC-1001",
        "repo": "acme-api",
        "model": "acme-coder",
        "feature": "agent",
        "provider": "acme",
        "requests": 1,
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 400,
        "cost_nanos": 2_880_000,
        **_ZERO,
        **_ZERO_UNPRICED,
    },
    {
        "day": "2026-11-03",
        "developer": "ana@acme.com",
        "team": "platform",
        "cost_center": "CC-1001",
        "repo": "acme-api",
        "model": "acme-coder",
        "feature": "chat",
        "provider": "acme",
        "requests": 1,
        "input_tokens": 2000,
        "output_tokens": 100,
        "cache_read_tokens": 0,
        "cost_nanos": 4_800_000,
        **_ZERO,
        **_ZERO_UNPRICED,
    },
    {
        "day": "2026-11-04",
        "developer": "bo@acme.com",
        "team": "data",
        "cost_center": "CC-2002",
        "repo": "acme-web",
        "model": "acme-mini",
        "feature": "agent",
        "provider": "acme",
        "requests": 1,
        "input_tokens": 10_000,
        "output_tokens": 1000,
        "cache_read_tokens": 0,
        "cost_nanos": 6_500_000,
        **_ZERO,
        **_ZERO_UNPRICED,
    },
]
EXPECTED_MONTHLY = [
    {
        "month": "2026-11",
        "developer": "ana@acme.com",
        "team": "platform",
        "cost_center": "CC-1001",
        "repo": "acme-api",
        "requests": 2,
        "input_tokens": 3000,
        "output_tokens": 300,
        "cache_read_tokens": 400,
        "cost_nanos": 7_680_000,
        **_ZERO,
        **_ZERO_UNPRICED,
    },
    {
        "month": "2026-11",
        "developer": "bo@acme.com",
        "team": "data",
        "cost_center": "CC-2002",
        "repo": "acme-web",
        "requests": 1,
        "input_tokens": 10_000,
        "output_tokens": 1000,
        "cache_read_tokens": 0,
        "cost_nanos": 6_500_000,
        **_ZERO,
        **_ZERO_UNPRICED,
    },
]


def stored_rows(running: RunningCollector) -> list[dict[str, Any]]:
    keys = EXPECTED_ROWS[0].keys()
    return [{k: row[k] for k in keys} for row in running.store.raw_rows()]


def assert_stored_exactly_once(running: RunningCollector) -> None:
    assert EXPECTED_ROWS == stored_rows(running)
    assert EXPECTED_DAILY == running.store.rollup_rows("rollup_daily")
    assert EXPECTED_MONTHLY == running.store.rollup_rows("rollup_monthly")


def grpc_exporter(running: RunningCollector) -> GrpcExporter:
    return GrpcExporter(endpoint=running.grpc_endpoint, insecure=True, timeout=10)


def http_exporter(running: RunningCollector) -> HttpExporter:
    return HttpExporter(endpoint=running.http_url, timeout=10)


@pytest.mark.parametrize("make_exporter", [grpc_exporter, http_exporter], ids=["grpc", "http-protobuf"])
def test_official_exporter_with_retried_batch_stores_each_span_once(
    collector: RunningCollector, make_exporter: Callable[[RunningCollector], Any]
) -> None:
    exporter = make_exporter(collector)
    try:
        assert SpanExportResult.SUCCESS == exporter.export([A, B, NOT_LLM])
        # The exporter "retries" a batch it never saw acknowledged, with one new span in it.
        assert SpanExportResult.SUCCESS == exporter.export([A, B, C])
        assert SpanExportResult.SUCCESS == exporter.export([C])
    finally:
        exporter.shutdown()

    assert_stored_exactly_once(collector)
    assert 7.0 == collector.metric("spendgate_collector_spans_received_total")
    assert 1.0 == collector.metric("spendgate_collector_non_llm_spans_total")
    assert 3.0 == collector.metric("spendgate_collector_spans_duplicate_total")
    assert 3.0 == collector.metric("spendgate_collector_spans_priced_total")
    assert pytest.approx(0.00768) == collector.metric("spendgate_collector_cost_usd_total", {"team": "platform"})


def test_stored_row_keeps_every_normalised_field(collector: RunningCollector) -> None:
    exporter = grpc_exporter(collector)
    assert SpanExportResult.SUCCESS == exporter.export([A])
    exporter.shutdown()

    (row,) = collector.store.raw_rows()
    assert {
        "trace_id": f"{0xA1:032x}",
        "span_id": f"{0x01:016x}",
        "start_ns": A.start_time,
        "end_ns": A.end_time,
        "developer": "ana@acme.com",
        "team": "platform",
        "cost_center": "CC-1001",
        "repo": "acme-api",
        "repo_url": None,
        "branch": None,
        "repo_source": "header",
        "feature": "agent",
        "key_id": None,
        "provider": "acme",
        "model": "acme-coder",
        "requested_model": "acme-coder",
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 400,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "usage_source": "provider",
        "status": "ok",
        "error_type": None,
        "ttft_ms": 123.5,
        "service_name": "spendgate-proxy",
        "cost_usd": pytest.approx(0.00288, abs=1e-12),
        "cost_source": "override",
        "price_version": row["price_version"],
    } == row
    assert row["price_version"].startswith("override:")


def test_json_over_http_with_gzip_and_hex_ids(collector: RunningCollector) -> None:
    first = json_body([(0xA1, 0x01, A_ATTRS, "2026-11-03T10:00:00"), (0xA1, 0x02, B_ATTRS, "2026-11-03T11:00:00")])
    again = json_body([(0xA1, 0x01, A_ATTRS, "2026-11-03T10:00:00"), (0xB2, 0x03, C_ATTRS, "2026-11-04T09:00:00")])
    with httpx.Client(timeout=10) as client:
        gzipped = client.post(
            collector.http_url,
            content=gzip.compress(first),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        plain = client.post(collector.http_url, content=again, headers={"Content-Type": "application/json"})
    assert (200, "application/json", {}) == (gzipped.status_code, gzipped.headers["content-type"], gzipped.json())
    assert (200, {}) == (plain.status_code, plain.json())

    # The same spans again over gRPC: ids from hex JSON and from protobuf bytes must be the same key.
    exporter = grpc_exporter(collector)
    assert SpanExportResult.SUCCESS == exporter.export([A, B, C])
    exporter.shutdown()

    assert_stored_exactly_once(collector)
    assert {"json-client"} == {row["service_name"] for row in collector.store.raw_rows()}


def test_protobuf_over_http_with_gzip(collector: RunningCollector) -> None:
    body = gzip.compress(protobuf_body([A, B, C]))
    response = httpx.post(
        collector.http_url,
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert (200, "application/x-protobuf") == (response.status_code, response.headers["content-type"])
    assert ExportTraceServiceResponse() == ExportTraceServiceResponse.FromString(response.content)
    assert_stored_exactly_once(collector)


def _malformed_spans() -> list[ReadableSpan]:
    return [
        A,
        span(0, 0x09, A_ATTRS),  # all-zero trace id
        span(0xD4, 0x0A, {**A_ATTRS, sc.LLM_TOKEN_COUNT_PROMPT: -5}),  # negative tokens
    ]


def test_malformed_spans_answer_partial_success_over_http(collector: RunningCollector) -> None:
    response = httpx.post(
        collector.http_url,
        content=protobuf_body(_malformed_spans()),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert 200 == response.status_code
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert 2 == partial.rejected_spans
    assert "invalid trace_id or span_id" in partial.error_message
    assert "input tokens is negative" in partial.error_message
    assert [f"{0x01:016x}"] == [row["span_id"] for row in collector.store.raw_rows()]
    assert 2.0 == collector.metric("spendgate_collector_spans_rejected_total")


def test_malformed_spans_answer_partial_success_over_grpc(collector: RunningCollector) -> None:
    request = ExportTraceServiceRequest.FromString(protobuf_body(_malformed_spans()))
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(
            EXPORT_PATH,
            request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        response = export(request, timeout=10)
    assert 2 == response.partial_success.rejected_spans
    assert 1 == len(collector.store.raw_rows())


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/x-protobuf", b"\xff\xff\xff not protobuf", 400),
        ("application/json", b"{not json", 400),
        ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', 400),
        ("text/plain", b"hello", 415),
    ],
)
def test_undecodable_http_bodies_are_permanent_errors(
    collector: RunningCollector, content_type: str, body: bytes, status: int
) -> None:
    response = httpx.post(collector.http_url, content=body, headers={"Content-Type": content_type})
    assert status == response.status_code
    assert "retry-after" not in response.headers


def test_undecodable_grpc_request_is_invalid_argument(collector: RunningCollector) -> None:
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(EXPORT_PATH)  # raw bytes both ways
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff not protobuf", timeout=10)
    assert grpc.StatusCode.INVALID_ARGUMENT == info.value.code()


def test_http_body_over_the_size_limit_is_413(tmp_path) -> None:
    with run_collector(tmp_path, max_request_bytes=2048) as running:
        big = protobuf_body([span(0xE0, i + 1, A_ATTRS) for i in range(20)])
        response = httpx.post(running.http_url, content=big, headers={"Content-Type": "application/x-protobuf"})
        assert 413 == response.status_code
        # A gzip bomb is refused by the same limit, measured after inflating.
        response = httpx.post(
            running.http_url,
            content=gzip.compress(big),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert 413 == response.status_code


class _StoreLock:
    """Hold SQLite's write lock from outside, so the collector's writer waits ("store busy")."""

    def __init__(self, running: RunningCollector) -> None:
        self._conn = sqlite3.connect(running.store.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_full_queue_answers_retryable_on_both_receivers(tmp_path) -> None:
    with run_collector(tmp_path, queue_max_bytes=1024) as running:
        lock = _StoreLock(running)
        first = protobuf_body([A, B])  # over half the queue on its own
        assert len(first) > 512
        answers: dict[str, httpx.Response] = {}
        sender = threading.Thread(
            target=lambda: answers.setdefault(
                "first",
                httpx.post(
                    running.http_url, content=first, headers={"Content-Type": "application/x-protobuf"}, timeout=30
                ),
            )
        )
        sender.start()
        try:
            _wait_for(lambda: running.collector.pipeline.stats().queued_bytes > 0)

            over_http = httpx.post(
                running.http_url, content=protobuf_body([C]), headers={"Content-Type": "application/x-protobuf"}
            )
            assert (503, "1") == (over_http.status_code, over_http.headers["retry-after"])

            with grpc.insecure_channel(running.grpc_endpoint) as channel:
                export = channel.unary_unary(EXPORT_PATH)
                with pytest.raises(grpc.RpcError) as info:
                    export(protobuf_body([C]), timeout=10)
            assert grpc.StatusCode.UNAVAILABLE == info.value.code()
            trailer = dict(info.value.trailing_metadata())["google.rpc.retryinfo-bin"]
            assert 1 == RetryInfo.FromString(trailer).retry_delay.seconds
        finally:
            lock.release()
            sender.join(30)

        # The request admitted before the queue filled is stored and acknowledged once the lock goes.
        assert 200 == answers["first"].status_code
        assert [f"{0x01:016x}", f"{0x02:016x}"] == [row["span_id"] for row in running.store.raw_rows()]
        requests = "spendgate_collector_export_requests_total"
        assert 1.0 == running.metric(requests, {"receiver": "http", "outcome": "ok"})
        assert 1.0 == running.metric(requests, {"receiver": "http", "outcome": "overloaded"})
        assert 1.0 == running.metric(requests, {"receiver": "grpc", "outcome": "overloaded"})


def test_official_http_exporter_retries_after_503_until_stored(tmp_path) -> None:
    with run_collector(tmp_path, queue_max_bytes=1024) as running:
        lock = _StoreLock(running)
        blocker = threading.Thread(
            target=httpx.post,
            args=(running.http_url,),
            kwargs={
                "content": protobuf_body([A, B]),
                "headers": {"Content-Type": "application/x-protobuf"},
                "timeout": 30,
            },
        )
        blocker.start()
        _wait_for(lambda: running.collector.pipeline.stats().queued_bytes > 0)

        result: list[SpanExportResult] = []
        exporter = HttpExporter(endpoint=running.http_url, timeout=20)
        sender = threading.Thread(target=lambda: result.append(exporter.export([C])))
        sender.start()
        # Release the store only once the exporter has been told to back off at least once.
        _wait_for(lambda: running.collector.pipeline.stats().overloaded >= 1)
        lock.release()
        sender.join(30)
        blocker.join(30)
        exporter.shutdown()

        assert [SpanExportResult.SUCCESS] == result
        assert_stored_exactly_once(running)


def test_json_request_gets_a_json_partial_success(collector: RunningCollector) -> None:
    body = json_body(
        [
            (0xA1, 0x01, A_ATTRS, "2026-11-03T10:00:00"),
            (0xA1, 0x02, {**B_ATTRS, sc.LLM_TOKEN_COUNT_PROMPT: -1}, "2026-11-03T11:00:00"),
        ]
    )
    response = httpx.post(collector.http_url, content=body, headers={"Content-Type": "application/json"})
    assert 200 == response.status_code
    assert {
        "partialSuccess": {"rejectedSpans": "1", "errorMessage": f"span {0x02:016x}: input tokens is negative"}
    } == response.json()


def test_json_with_invalid_hex_id_rejects_only_that_span(collector: RunningCollector) -> None:
    body = json_body([(0xA1, 0x01, A_ATTRS, "2026-11-03T10:00:00")]).replace(
        f"{0x01:016x}".encode(), b"not-hex-at-all!!"
    )
    response = httpx.post(collector.http_url, content=body, headers={"Content-Type": "application/json"})
    assert (200, "1") == (response.status_code, response.json()["partialSuccess"]["rejectedSpans"])
