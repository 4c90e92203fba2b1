"""The exporters' parts on their own: the span rewrite, the wire helpers, the queue, config and backoff.

The rewrite is checked against the official ``opentelemetry-proto`` decoder: whatever it does not
mean to change must come out equal, field by field.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import Event

from spendgate_collector.config import CollectorConfig, load_config
from spendgate_collector.errors import ConfigError
from spendgate_collector.exporters.config import ExporterConfig
from spendgate_collector.exporters.enrich import Enricher, SpanFilter, StoredRequest
from spendgate_collector.exporters.forwarder import Backoff, _merge
from spendgate_collector.exporters.process import decode_batch, frame, read_frame
from spendgate_collector.exporters.queue import ExportQueue
from spendgate_collector.exporters.senders import _retry_after
from spendgate_collector.exporters.wire import event_name, key_of, key_value, partial_success
from spendgate_collector.records import SpendRecord
from spendgate_semconv import attributes as sc
from tests.collector.conftest import run_collector
from tests.collector.spans import ours, protobuf_body, span
from tests.collector.test_exporters import exporter, flush, health, llm, send
from tests.export.backends import GrpcBackend, wait_for


def record(trace_id: int, span_id: int, **fields: Any) -> SpendRecord:
    base: dict[str, Any] = {"cost_usd": 0.0028, "cost_input_usd": 0.002, "cost_output_usd": 0.0008}
    base |= {"cost_source": "override", "price_version": "override:abcd1234"}
    return SpendRecord(f"{trace_id:032x}", f"{span_id:016x}", 1, 2, "acme-coder", **(base | fields))


def decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def attrs(message: Any) -> dict[str, Any]:
    out = {}
    for kv in message.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


# --- the rewrite


def test_enrich_adds_cost_and_missing_attribution_and_keeps_everything_else() -> None:
    source = span(1, 2, ours(developer=None, team=None), end="2026-11-03T10:00:00")
    payload = protobuf_body([source])
    r = record(1, 2, developer="bo@acme.com", team="mobile", cost_center="IGNORED", repo="IGNORED")
    data, kept = Enricher(SpanFilter()).transform(StoredRequest(payload, 1, [r]))

    assert 1 == kept
    before = decoded(payload).resource_spans[0]
    after = decoded(data).resource_spans[0]
    assert before.resource == after.resource
    assert before.scope_spans[0].scope == after.scope_spans[0].scope
    old, new = before.scope_spans[0].spans[0], after.scope_spans[0].spans[0]
    for field in ("trace_id", "span_id", "name", "kind", "start_time_unix_nano", "end_time_unix_nano", "status"):
        assert getattr(old, field) == getattr(new, field), field
    added = {k: v for k, v in attrs(new).items() if k not in attrs(old)}
    assert {
        sc.LLM_COST_PROMPT: 0.002,
        sc.LLM_COST_COMPLETION: 0.0008,
        sc.LLM_COST_TOTAL: 0.0028,
        sc.SPENDGATE_COST_SOURCE: "override",
        sc.SPENDGATE_PRICE_VERSION: "override:abcd1234",
        sc.USER_ID: "bo@acme.com",
        sc.SPENDGATE_TEAM: "mobile",
    } == added  # cost centre and repo were on the span: left as sent
    assert attrs(old).items() <= attrs(new).items()


def test_enrich_forwards_a_request_without_llm_spans_as_received() -> None:
    payload = b"not even parsed"
    assert (payload, 7) == Enricher(SpanFilter()).transform(StoredRequest(payload, 7, []))
    assert (b"", 0) == Enricher(SpanFilter(llm_only=True)).transform(StoredRequest(payload, 7, []))


def test_enrich_skips_duplicates_and_empties_scopes() -> None:
    payload = protobuf_body([span(1, 2, ours()), span(1, 3, ours())])
    first, second = record(1, 2), record(1, 3)
    data, kept = Enricher(SpanFilter()).transform(StoredRequest(payload, 2, [first, second]), inserted={id(second)})
    assert 1 == kept
    assert [f"{3:016x}"] == [s.span_id.hex() for s in decoded(data).resource_spans[0].scope_spans[0].spans]
    assert (b"", 0) == Enricher(SpanFilter()).transform(StoredRequest(payload, 2, [first, second]), inserted=set())


def test_drop_content_removes_content_attributes_and_events_only() -> None:
    source = span(1, 2, ours(**{sc.INPUT_VALUE: "secret", "llm.output_messages.0.message.content": "answer"}))
    source._events = (Event("gen_ai.choice", {"text": "answer"}, 5), Event("exception", {"type": "x"}, 6))
    payload = protobuf_body([source])
    data, _ = Enricher(SpanFilter(drop_content=True)).transform(StoredRequest(payload, 1, [record(1, 2)]))
    new = decoded(data).resource_spans[0].scope_spans[0].spans[0]
    assert sc.INPUT_VALUE not in attrs(new)
    assert "llm.output_messages.0.message.content" not in attrs(new)
    assert ["exception"] == [e.name for e in new.events]
    assert sc.LLM_MODEL_NAME in attrs(new) and sc.LLM_COST_TOTAL in attrs(new)


def test_unpriced_record_gets_source_but_no_cost() -> None:
    payload = protobuf_body([span(1, 2, ours())])
    r = record(1, 2, cost_usd=None, cost_input_usd=None, cost_output_usd=None, cost_source="unpriced")
    data, _ = Enricher(SpanFilter()).transform(StoredRequest(payload, 1, [r]))
    new = attrs(decoded(data).resource_spans[0].scope_spans[0].spans[0])
    assert "unpriced" == new[sc.SPENDGATE_COST_SOURCE]
    assert not {sc.LLM_COST_PROMPT, sc.LLM_COST_COMPLETION, sc.LLM_COST_TOTAL} & set(new)


def test_merged_requests_are_one_valid_request() -> None:
    a = protobuf_body([span(1, 2, ours())])
    b = protobuf_body([span(3, 4, ours()), span(3, 5, ours())])
    merged = _merge([(a, 1), (b, 2), (a, 1)], max_bytes=len(a) + len(b))
    assert [3, 1] == [spans for _, spans in merged]
    spans = [s.span_id.hex() for rs in decoded(merged[0][0]).resource_spans for s in rs.scope_spans[0].spans]
    assert [f"{2:016x}", f"{4:016x}", f"{5:016x}"] == spans


# --- wire helpers


@pytest.mark.parametrize("value", ["text", True, False, 0, 42, -7, 1.5, 2**40])
def test_key_value_decodes_with_the_official_classes(value: Any) -> None:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    kv = KeyValue.FromString(key_value("some.key", value))
    kind = kv.value.WhichOneof("value")
    assert ("some.key", value, type(value)) == (kv.key, getattr(kv.value, kind), type(getattr(kv.value, kind)))
    assert "some.key" == key_of(key_value("some.key", value))


def test_key_and_event_name_readers_handle_long_and_reordered_fields() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    long_key = "k" * 300
    assert long_key == key_of(key_value(long_key, "v"))
    event = Span.Event(name="gen_ai.choice", time_unix_nano=123)
    assert "gen_ai.choice" == event_name(event.SerializeToString())
    assert "x" * 200 == event_name(Span.Event(name="x" * 200).SerializeToString())
    assert "" == event_name(b"\xff\xff")


def test_partial_success_is_read_from_the_response() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 3
    response.partial_success.error_message = "too old"
    assert (3, "too old") == partial_success(response.SerializeToString())
    assert (0, "") == partial_success(b"")
    assert (0, "") == partial_success(b"\xff garbage")


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0.5", 0.5), ("-1", 0.0), (None, None), ("soon", None)])
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    assert expected == _retry_after(header)


def test_retry_after_http_date_is_read_as_seconds_from_now() -> None:
    from email.utils import formatdate
    from time import time

    assert 25 < (_retry_after(formatdate(time() + 30, usegmt=True)) or 0) <= 30


# --- queue


def test_queue_is_fifo_per_exporter_and_survives_reopening(tmp_path: Path) -> None:
    queue = ExportQueue(tmp_path / "q.db")
    queue.put([("a", 1, b"a1"), ("b", 2, b"b1"), ("a", 3, b"a2")])
    item = queue.peek("a", max_bytes=1)
    assert item is not None and (b"a1", 1) == (item.payload, item.spans)
    queue.remove("a", item)
    queue.close()

    reopened = ExportQueue(tmp_path / "q.db")
    assert ["a", "b"] == reopened.exporters_with_rows()
    assert (1, 3, 2) == (reopened.totals("a").items, reopened.totals("a").spans, reopened.totals("a").bytes)
    merged = reopened.peek("b", max_bytes=1 << 20)
    assert merged is not None and b"b1" == merged.payload


def test_queue_trim_drops_the_oldest_but_not_the_request_in_flight(tmp_path: Path) -> None:
    queue = ExportQueue(tmp_path / "q.db")
    queue.put([("a", 10, b"x" * 100) for _ in range(5)])
    in_flight = queue.peek("a", max_bytes=100)
    assert in_flight is not None
    assert (3, 30) == queue.trim("a", max_bytes=250)
    totals = queue.totals("a")
    assert (2, 20, 200) == (totals.items, totals.spans, totals.bytes)  # the one in flight and the newest
    queue.remove("a", in_flight)
    assert (1, 10) == (queue.totals("a").items, queue.totals("a").spans)


# --- config


def test_exporter_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            environ={
                "SPENDGATE_COLLECTOR_EXPORTERS": '[{"name": "a", "endpoint": "ftp://x:1"},'
                ' {"name": "a", "protocol": "http", "endpoint": "x:1"}]'
            }
        )
    message = str(info.value)
    assert "exporters.0.endpoint" in message and "scheme must be http or https" in message
    assert "exporters.1" in message and "needs a URL" in message


def test_exporter_names_must_be_unique_and_the_queue_sits_beside_the_store() -> None:
    with pytest.raises(ValueError, match="used twice"):
        CollectorConfig(exporters=[{"name": "a", "endpoint": "h:1"}, {"name": "a", "endpoint": "h:2"}])
    config = CollectorConfig(db=Path("/data/spend.db"), exporters=[{"name": "a", "endpoint": "h:1"}])
    assert Path("/data/spend-export-queue.db") == config.exporters_queue_path
    assert isinstance(config.exporters[0], ExporterConfig)


# --- backoff and the process link


def test_backoff_grows_caps_jitters_and_honours_hints() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert 10.0 <= backoff.next_delay(hint_s=10.0)
    assert 300.0 == Backoff(0.5, 4.0).next_delay(hint_s=86_400.0)  # a bogus hint is capped
    backoff.reset()
    assert backoff.next_delay() <= 0.6


def test_frames_round_trip_and_batches_decode() -> None:
    import io

    row = ("t", "s", 1.0, 0.5, 0.5, "override", "v1", "d@acme.com", None, None, None, None, None, False)
    stream = io.BytesIO(frame(("batch", 7, [(b"p", 3, [row])])))
    message = read_frame(stream)
    assert "batch" == message[0] and 7 == message[1]
    stored, inserted = decode_batch(message[2])
    assert (b"p", 3, "d@acme.com") == (stored[0].payload, stored[0].spans, stored[0].records[0].developer)
    assert set() == inserted  # the one record was stale
    assert read_frame(stream) is None


def test_a_killed_exporters_process_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    backend = GrpcBackend().start()
    try:
        with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
            manager = collector.collector.exporters
            assert manager is not None and manager.pid is not None
            send(collector, [llm(i) for i in range(10)])
            first = manager.pid
            os.kill(first, signal.SIGKILL)
            send(collector, [llm(i) for i in range(10, 30)])  # handed over while it is down
            assert wait_for(lambda: manager.pid != first)
            assert flush(collector)
            assert 1 == collector.metric("spendgate_collector_exporter_process_restarts_total")
            assert "idle" == health(collector)["exporters"]["backend"]["state"]
        assert {f"{0xB000 + i:016x}" for i in range(30)} == {s.span_id for s in backend.spans}
    finally:
        backend.stop()
