"""Spans encoded as they are queued, static attributes reused: the same spans, failures counted."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spendgate_proxy.attribution.chain import Attribution
from spendgate_proxy.keys import Principal
from spendgate_proxy.telemetry.otlp_encode import RequestEncoder
from spendgate_proxy.telemetry.otlp_export import Outcome, Result
from spendgate_proxy.telemetry.spans import CallRecord, OTLPRecordSink, SpanExportWorker, build_span, encode_record
from tests.proxy.test_otlp import RESOURCE, _record


class _Capture:
    """A sender that keeps what it is given (the request bytes), as a receiver would get them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> Outcome:
        self.sent.append(data)
        return Outcome(Result.SUCCESS)

    def shutdown(self) -> None:
        pass


def test_queued_spans_are_encoded_once_and_exported_unchanged() -> None:
    sender = _Capture()
    worker = SpanExportWorker(OTLPRecordSink(sender, RESOURCE))  # type: ignore[arg-type]
    records = [_record(), _record(parent_span_id=7, error_type="timeout", status_code=504)]
    for rec in records:
        worker.record(rec)
    assert all(item.__class__ is bytes for item in worker._queue)  # encoded when queued
    assert worker.force_flush() is True
    (data,) = sender.sent
    spans = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans
    assert [s.SerializeToString() for s in spans] == [encode_record(r) for r in records]


def test_a_record_that_cannot_be_encoded_is_counted_as_dropped(caplog: pytest.LogCaptureFixture) -> None:
    sender = _Capture()
    worker = SpanExportWorker(OTLPRecordSink(sender, RESOURCE))  # type: ignore[arg-type]
    bad: CallRecord = _record(trace_id=-1)  # not a 128-bit id: to_bytes raises
    worker.record(bad)
    worker.record(_record())
    assert worker.stats().dropped == 1 and worker.stats().queued == 1
    assert worker.force_flush() is True
    assert worker.stats().exported == 1
    assert "could not be encoded" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        {"attribution": Attribution("web", "header", "dev")},
        {"principal": Principal("key_2", "bo@acme.com", "platform", "CC-1", "api")},
        {"feature": "chat"},
        {"served_model": "gpt-4.1"},
        {"route": "/t/repo=web/v1/chat/completions"},
        {"stream": False},
    ],
)
def test_reused_static_attributes_never_cross_calls(change: dict[str, object]) -> None:
    first, second = _record(), _record(**change)
    for rec in (first, second, first, second):  # the second round comes from the cache
        expected = encode_spans([build_span(rec, RESOURCE)]).resource_spans[0].scope_spans[0].spans[0]
        ours = ExportTraceServiceRequest.FromString(RequestEncoder({}, "s", "1").encode([encode_record(rec)]))
        assert list(ours.resource_spans[0].scope_spans[0].spans[0].attributes) == list(expected.attributes)
