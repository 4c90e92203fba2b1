"""The proxy's own OTLP path: encoder output equals the SDK's, senders classify outcomes, the
worker keeps spend across receiver outages."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from spendgate_proxy.attribution.chain import Attribution
from spendgate_proxy.formats.canonical import Usage
from spendgate_proxy.keys import Principal
from spendgate_proxy.telemetry.otlp_encode import RequestEncoder
from spendgate_proxy.telemetry.otlp_export import GrpcSender, HttpSender, Outcome, Result
from spendgate_proxy.telemetry.spans import (
    SCOPE_NAME,
    SCOPE_VERSION,
    CallRecord,
    OTLPRecordSink,
    SpanExportWorker,
    build_span,
    encode_record,
)
from tests.support.aio_server import ServerHandle, serve_app
from tests.support.otlp_receiver import otlp_receiver

RESOURCE = Resource.create({"service.name": "spendgate-proxy-test"})


def _record(**overrides: object) -> CallRecord:
    now = time.time_ns()
    fields: dict[str, object] = dict(
        start_ns=now - 5_000_000,
        end_ns=now,
        route="/v1/chat/completions",
        trace_id=random.getrandbits(128),
        span_id=random.getrandbits(64),
        principal=Principal("key_1", "ana@acme.com", "platform", "CC-1", "api"),
        attribution=Attribution("api", "key-default", "main", ("ci", "nightly")),
        feature="agent",
        requested_model="fast",
        served_model="gpt-4.1-mini",
        provider_id="sim",
        server_address="127.0.0.1",
        server_port=8080,
        stream=True,
        status_code=200,
        usage=Usage(1200, 80, 1000, 0, 16),
        finish_reasons=("tool_calls",),
        response_id="chatcmpl-1",
        response_model="gpt-4.1-mini",
        ttft_ns=now - 4_000_000,
        params={"max_tokens": 512, "temperature": 0.2},
    )
    fields.update(overrides)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"parent_span_id": 0x00F067AA0BA902B7},
        {"error_type": "500", "error_message": "boom", "status_code": 500, "usage": None},
        {"error_type": "client_disconnected", "disconnected": True, "usage_estimated": True},
        {"principal": None, "attribution": None, "params": {}, "usage": Usage(-1, 2**40)},
    ],
)
def test_encoder_matches_the_sdk_encoding(overrides: dict[str, object]) -> None:
    rec = _record(**overrides)
    expected = encode_spans([build_span(rec, RESOURCE)])
    for span in expected.resource_spans[0].scope_spans[0].spans:
        span.ClearField("flags")  # trace flags: the SDK's own bookkeeping, not part of our contract
    ours = ExportTraceServiceRequest.FromString(
        RequestEncoder(dict(RESOURCE.attributes), SCOPE_NAME, SCOPE_VERSION).encode([encode_record(rec)])
    )
    assert expected == ours


def test_grpc_sender_delivers_and_classifies() -> None:
    with otlp_receiver() as (endpoint, receiver):
        sink = OTLPRecordSink(GrpcSender("http://" + endpoint), RESOURCE)
        assert sink.export([_record(), _record()]).result is Result.SUCCESS
        spans = receiver.wait(2)
    assert [s["name"] for s in spans] == ["chat gpt-4.1-mini"] * 2
    assert spans[0]["attributes"]["user.id"] == "ana@acme.com"
    # Nothing listening any more: retryable, the records are kept by the worker.
    assert (
        GrpcSender("http://" + endpoint, env={"OTEL_EXPORTER_OTLP_TIMEOUT": "2"}).send(b"").result is Result.RETRYABLE
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def flaky_http_receiver() -> Iterator[tuple[ServerHandle, list[int]]]:
    """Answers 503 (Retry-After: 0) twice, then 200; 400 for an empty body."""
    seen: list[int] = []

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if not body:
            return web.Response(status=400)
        seen.append(len(ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans))
        if len(seen) <= 2:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=b"", content_type="application/x-protobuf")

    def make() -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        return app

    with serve_app(make) as srv:
        yield srv, seen


def test_http_sender_outcomes(flaky_http_receiver: tuple[ServerHandle, list[int]]) -> None:
    srv, _ = flaky_http_receiver
    sender = HttpSender(srv.url)
    assert sender.url == srv.url + "/v1/traces"
    assert sender.send(b"") == Outcome(Result.PERMANENT, None, "HTTP 400")
    data = RequestEncoder({}, "s", "1").encode([encode_record(_record())])
    assert sender.send(data) == Outcome(Result.RETRYABLE, 0.0, "HTTP 503")
    assert HttpSender(f"http://127.0.0.1:{_free_port()}").send(data).result is Result.RETRYABLE


def test_worker_keeps_records_through_an_outage(flaky_http_receiver: tuple[ServerHandle, list[int]]) -> None:
    srv, seen = flaky_http_receiver
    worker = SpanExportWorker(OTLPRecordSink(HttpSender(srv.url), RESOURCE), interval_s=0.02, max_batch=10)
    worker.start()
    try:
        for _ in range(25):
            worker.record(_record())
        deadline = time.monotonic() + 20
        while worker.stats().exported < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = worker.stats()
    finally:
        worker.shutdown()
    assert (stats.exported, stats.dropped, stats.queued) == (25, 0, 0)
    assert stats.failed_attempts == 2
    assert sum(seen[2:]) == 25  # the two refused batches were sent again, nothing lost or doubled


def test_worker_queue_bound_counts_drops() -> None:
    class Down:
        def export(self, records: list[CallRecord]) -> Outcome:
            return Outcome(Result.RETRYABLE)

        def shutdown(self) -> None:
            pass

    worker = SpanExportWorker(Down(), max_queue=5)
    for _ in range(8):
        worker.record(_record())
    assert worker.stats().queued == 5
    assert worker.stats().dropped == 3
    assert worker.force_flush() is False  # not started: a direct attempt, which failed
    assert worker.stats().queued == 5  # ... and kept what it could
