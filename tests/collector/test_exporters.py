"""Exporters end to end: a real collector forwards what it stored to real local OTLP backends.

Spans go in over the collector's OTLP/gRPC receiver as an exporter would send them; the backends
(``tests/export/backends.py``) decode what arrives with the official protobuf classes. Prices come
from the custom ``acme-coder`` rates of ``conftest.PRICES_YAML`` (2 / 8 USD per million input /
output tokens), so every expected cost is worked out by hand.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from spendgate_proxy.keys import create_key
from spendgate_semconv import attributes as sc
from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.spans import ns, ours, protobuf_body, span
from tests.export.backends import EXPORT_METHOD, Failure, GrpcBackend, HttpBackend, wait_for

END = "2026-11-03T10:00:00"
HTTP_SCOPE = InstrumentationScope("opentelemetry.instrumentation.aiohttp_server", "0.50b0")


@pytest.fixture
def backend() -> Iterator[GrpcBackend]:
    b = GrpcBackend().start()
    yield b
    b.stop()


def exporter(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "grpc",
        "endpoint": endpoint,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        **extra,
    }


def send(collector: RunningCollector, spans: list[ReadableSpan], timeout: float = 10) -> float:
    """Export ``spans`` to the collector over OTLP/gRPC; return how long the acknowledgement took."""
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        started = time.perf_counter()
        call(protobuf_body(spans), timeout=timeout)
        return time.perf_counter() - started


def llm(i: int, **attrs: Any) -> ReadableSpan:
    """LLM span ``i`` on the custom acme-coder model: 1,000 input and 100 output tokens."""
    return span(0xA000 + i, 0xB000 + i, ours(model="acme-coder", provider="acme", **attrs), end=END)


def plain(i: int, *, parent: int | None = None, events: tuple[Event, ...] = (), **attrs: Any) -> ReadableSpan:
    """A non-LLM span (an HTTP handler, a DB call...) with a parent and events."""
    end_ns = ns(END)
    return ReadableSpan(
        name=f"GET /items/{i}",
        context=SpanContext(0xA000 + i, 0xC000 + i, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        parent=SpanContext(0xA000 + i, parent, is_remote=False) if parent else None,
        resource=Resource.create({"service.name": "items-api"}),
        attributes={"http.request.method": "GET", "http.route": "/items/{id}", **attrs},
        events=events,
        kind=SpanKind.SERVER,
        start_time=end_ns - 5_000_000,
        end_time=end_ns,
        instrumentation_scope=HTTP_SCOPE,
    )


def health(collector: RunningCollector) -> dict[str, Any]:
    with urllib.request.urlopen(f"{collector.api_url}/healthz", timeout=5) as response:
        return json.loads(response.read())


def flush(collector: RunningCollector, timeout: float = 20) -> bool:
    assert collector.collector.exporters is not None
    return collector.collector.exporters.wait_idle(timeout)


# --- enrichment


def test_llm_spans_arrive_with_cost_and_key_attribution(tmp_path: Path, backend: GrpcBackend) -> None:
    keys_file = tmp_path / "keys.yaml"
    key = create_key(keys_file, user="bo@acme.com", team="mobile", cost_center="CC-200", repo="acme-app")[1]
    key_id = key.principal.key_id
    spans = [
        llm(1),
        # Only the key id: the collector fills in who, team, cost centre and repo from the principal.
        llm(2, developer=None, team=None, cost_center=None, repo=None, key_id=key_id),
        # An instrumentation's own (different) cost is replaced by the collector's.
        llm(3, **{sc.LLM_COST_TOTAL: 99.0, sc.SPENDGATE_COST_SOURCE: "made-up"}),
        plain(4, parent=0xD004, events=(Event("cache.miss", {"key": "items:4"}, ns(END) - 1000),)),
    ]
    with run_collector(tmp_path, keys_file=keys_file, exporters=[exporter("backend", backend.endpoint)]) as collector:
        send(collector, spans)
        received = {s.span_id: s for s in backend.wait_spans(4)}

    assert 4 == len(received)
    first = received[f"{0xB001:016x}"].attributes
    assert pytest.approx(0.002) == first[sc.LLM_COST_PROMPT]  # 1,000 x 2 USD per M
    assert pytest.approx(0.0008) == first[sc.LLM_COST_COMPLETION]  # 100 x 8 USD per M
    assert pytest.approx(0.0028) == first[sc.LLM_COST_TOTAL]
    assert "override" == first[sc.SPENDGATE_COST_SOURCE]
    assert first[sc.SPENDGATE_PRICE_VERSION].startswith("override:")  # a custom model of prices.yaml
    assert "ana@acme.com" == first[sc.USER_ID]  # the span's own attribution is kept as sent
    # Everything the span was sent with is still there, unchanged.
    for name, value in ours(model="acme-coder", provider="acme").items():
        assert value == first[name], name

    from_key = received[f"{0xB002:016x}"].attributes
    assert ("bo@acme.com", "mobile", "CC-200", "acme-app", "key-default") == (
        from_key[sc.USER_ID],
        from_key[sc.SPENDGATE_TEAM],
        from_key[sc.SPENDGATE_COST_CENTER],
        from_key[sc.VCS_REPOSITORY_NAME],
        from_key[sc.SPENDGATE_REPO_SOURCE],
    )
    assert pytest.approx(0.0028) == from_key[sc.LLM_COST_TOTAL]

    replaced = received[f"{0xB003:016x}"]
    assert pytest.approx(0.0028) == replaced.attributes[sc.LLM_COST_TOTAL]
    assert "override" == replaced.attributes[sc.SPENDGATE_COST_SOURCE]
    keys = [a.key for a in replaced.raw.attributes]
    assert len(keys) == len(set(keys)), "no attribute may appear twice"

    # Not an LLM span: forwarded exactly as sent (name, kind, parent, events, attributes, resource).
    other = received[f"{0xC004:016x}"]
    assert ("GET /items/4", 2, f"{0xD004:016x}") == (other.name, other.kind, other.parent_span_id)
    assert {"http.request.method": "GET", "http.route": "/items/{id}"} == other.attributes
    assert ["cache.miss"] == other.events
    assert "items-api" == other.resource["service.name"]
    assert "spendgate.proxy" == received[f"{0xB001:016x}"].scope


def test_unpriced_model_is_forwarded_without_cost(tmp_path: Path, backend: GrpcBackend) -> None:
    unknown = span(0xE1, 0xE2, ours(model="no-such-model-xyz", provider="nowhere"), end=END)
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        send(collector, [unknown])
        (received,) = backend.wait_spans(1)
    assert "unpriced" == received.attributes[sc.SPENDGATE_COST_SOURCE]
    assert sc.LLM_COST_TOTAL not in received.attributes  # never a silent zero


def test_http_exporter_with_gzip_and_headers(tmp_path: Path) -> None:
    backend = HttpBackend().start()
    try:
        config = {
            "name": "http-backend",
            "protocol": "http",
            "endpoint": backend.url,
            "compression": "gzip",
            "headers": {"Authorization": "Bearer t0ken"},
        }
        with run_collector(tmp_path, exporters=[config]) as collector:
            send(collector, [llm(1), plain(2)])
            received = {s.span_id: s for s in backend.wait_spans(2)}
        assert pytest.approx(0.0028) == received[f"{0xB001:016x}"].attributes[sc.LLM_COST_TOTAL]
        assert {"http.request.method": "GET", "http.route": "/items/{id}"} == received[f"{0xC002:016x}"].attributes
        assert "Bearer t0ken" == backend.headers[0]["Authorization"]
        assert "gzip" == backend.headers[0]["Content-Encoding"]
    finally:
        backend.stop()


# --- filters


def test_llm_only_and_drop_content_filters(tmp_path: Path) -> None:
    content = {
        sc.INPUT_VALUE: '{"messages": [{"role": "user", "content": "secret plan"}]}',
        sc.OUTPUT_VALUE: "the answer",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "secret plan",
        "llm.output_messages.0.message.content": "the answer",
        "gen_ai.prompt.0.content": "secret plan",
        "gen_ai.completion.0.content": "the answer",
    }
    prompt_event = Event("gen_ai.content.prompt", {"gen_ai.prompt": "secret plan"}, ns(END) - 2000)
    other_event = Event("retry", {"attempt": 1}, ns(END) - 1000)
    llm_span = span(0xA001, 0xB001, ours(model="acme-coder", **content), end=END)
    llm_span._events = (prompt_event, other_event)  # the span() helper takes no events
    spans = [llm_span, plain(2, **{sc.INPUT_VALUE: "GET body"})]
    llm_only, no_content, everything = GrpcBackend().start(), GrpcBackend().start(), GrpcBackend().start()
    try:
        exporters = [
            exporter("llm-only", llm_only.endpoint, llm_only=True),
            exporter("no-content", no_content.endpoint, drop_content=True),
            exporter("everything", everything.endpoint),
        ]
        with run_collector(tmp_path, exporters=exporters) as collector:
            send(collector, spans)
            assert flush(collector)
            stats = health(collector)["exporters"]
    finally:
        for b in (llm_only, no_content, everything):
            b.stop()

    assert [f"{0xB001:016x}"] == [s.span_id for s in llm_only.spans]
    assert content.items() <= llm_only.spans[0].attributes.items()  # llm_only alone keeps content

    stripped = no_content.by_span_id()
    assert 2 == len(stripped)
    for received in stripped.values():
        assert not set(content) & set(received.attributes), received.name
    assert ["retry"] == stripped[f"{0xB001:016x}"].events
    assert pytest.approx(0.0028) == stripped[f"{0xB001:016x}"].attributes[sc.LLM_COST_TOTAL]

    full = everything.by_span_id()
    assert ["gen_ai.content.prompt", "retry"] == full[f"{0xB001:016x}"].events
    assert "GET body" == full[f"{0xC002:016x}"].attributes[sc.INPUT_VALUE]
    assert (1, 2, 2) == tuple(stats[name]["sent_spans"] for name in ("llm-only", "no-content", "everything"))


def test_duplicate_llm_spans_are_not_forwarded_twice(tmp_path: Path, backend: GrpcBackend) -> None:
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        send(collector, [llm(1), llm(2)])
        send(collector, [llm(1), llm(2), llm(3)])  # a client retry that also carries a new span
        assert flush(collector)
    assert [f"{0xB000 + i:016x}" for i in (1, 2, 3)] == sorted(s.span_id for s in backend.spans)


# --- a backend that fails


def test_backend_down_then_up_loses_nothing_and_never_blocks_ingest(tmp_path: Path) -> None:
    backend = GrpcBackend().start()
    backend.stop()  # the port is known, nothing listens on it: connection refused
    requests, per_request = 40, 50
    try:
        with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
            acks = []
            for r in range(requests):
                batch = [llm(r * per_request + i) for i in range(per_request)]
                acks.append(send(collector, batch))
            # Ingest went on at full speed while every export attempt failed.
            assert max(acks) < 1.0, f"slowest acknowledgement {max(acks):.3f}s"
            total = requests * per_request
            assert wait_for(lambda: health(collector)["exporters"]["backend"]["queue_spans"] == total)
            assert wait_for(lambda: health(collector)["exporters"]["backend"]["retries"] >= 2)
            down = health(collector)["exporters"]["backend"]
            assert "retrying" == down["state"]
            assert "UNAVAILABLE" in down["last_error"]
            assert total == collector.metric("spendgate_collector_exporter_queue_spans", {"exporter": "backend"})

            backend.start()
            received = backend.wait_spans(requests * per_request, timeout=30)
            assert flush(collector)
            up = health(collector)["exporters"]["backend"]
        assert requests * per_request == len({s.span_id for s in received})
        assert requests * per_request == len(received)  # and nothing twice
        assert (0, 0) == (up["queue_spans"], sum(up["dropped_spans"].values()))
        assert requests * per_request == up["sent_spans"]
    finally:
        backend.stop()


def test_retryable_answers_are_retried_after_the_servers_hint(tmp_path: Path, backend: GrpcBackend) -> None:
    backend.failures.extend(
        [Failure(grpc.StatusCode.UNAVAILABLE, retry_after_s=0.4), Failure(grpc.StatusCode.UNAVAILABLE)]
    )
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        started = time.monotonic()
        send(collector, [llm(1)])
        backend.wait_spans(1)
        elapsed = time.monotonic() - started
        assert flush(collector)
        attempts = {
            result: collector.metric(
                "spendgate_collector_exporter_send_attempts_total", {"exporter": "backend", "result": result}
            )
            for result in ("success", "retryable", "permanent")
        }
    assert 3 == backend.requests
    assert elapsed >= 0.4, "the RetryInfo delay was not honoured"
    assert {"success": 1, "retryable": 2, "permanent": 0} == attempts


def test_permanent_refusal_is_dropped_and_counted(tmp_path: Path, backend: GrpcBackend) -> None:
    backend.failures.append(Failure(grpc.StatusCode.INVALID_ARGUMENT))
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        send(collector, [llm(1), llm(2)])
        assert wait_for(lambda: health(collector)["exporters"]["backend"]["dropped_spans"]["permanent"] == 2)
        send(collector, [llm(3)])  # the next request goes through: nothing is stuck behind the refusal
        backend.wait_spans(1)
        assert flush(collector)
        dropped = collector.metric(
            "spendgate_collector_exporter_dropped_spans_total", {"exporter": "backend", "reason": "permanent"}
        )
    assert [f"{0xB003:016x}"] == [s.span_id for s in backend.spans]
    assert 2 == dropped


def test_http_429_and_retry_after_then_accepted(tmp_path: Path) -> None:
    backend = HttpBackend().start()
    backend.failures.extend([Failure(http_status=429, retry_after_s=0.3), Failure(http_status=503)])
    try:
        config = {"name": "http", "protocol": "http", "endpoint": backend.url, "retry_initial_s": 0.05}
        with run_collector(tmp_path, exporters=[config]) as collector:
            started = time.monotonic()
            send(collector, [llm(1)])
            backend.wait_spans(1)
            elapsed = time.monotonic() - started
            backend.failures.append(Failure(http_status=400))
            send(collector, [llm(2)])
            assert wait_for(lambda: health(collector)["exporters"]["http"]["dropped_spans"]["permanent"] == 1)
    finally:
        backend.stop()
    assert elapsed >= 0.3
    assert 4 == backend.requests  # 429, 503, 200, then 400 (not retried)


def test_partial_success_rejections_are_counted(tmp_path: Path, backend: GrpcBackend) -> None:
    backend.reject_spans = 1
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        send(collector, [llm(1), llm(2)])
        assert flush(collector)
        stats = health(collector)["exporters"]["backend"]
    assert (1, 1) == (stats["sent_spans"], stats["dropped_spans"]["rejected"])


# --- the persistent queue


def test_queue_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    backend = GrpcBackend().start()
    backend.stop()
    bound = 64 * 1024
    requests, per_request = 30, 20  # ~1.2 KiB per forwarded span: ~700 KiB, ten times the bound
    try:
        config = exporter("backend", backend.endpoint, queue_max_bytes=bound)
        with run_collector(tmp_path, exporters=[config]) as collector:
            for r in range(requests):
                send(collector, [llm(r * per_request + i) for i in range(per_request)])
            total = requests * per_request

            def settled() -> bool:  # every span either dropped or waiting
                stats = health(collector)["exporters"]["backend"]
                return stats["dropped_spans"]["queue_full"] + stats["queue_spans"] == total

            assert wait_for(settled)
            full = health(collector)["exporters"]["backend"]
            assert 0 < full["dropped_spans"]["queue_full"]
            assert full["queue_bytes"] <= bound
            assert bound == full["queue_max_bytes"]
            dropped = full["dropped_spans"]["queue_full"]
            assert dropped == collector.metric(
                "spendgate_collector_exporter_dropped_spans_total", {"exporter": "backend", "reason": "queue_full"}
            )
            backend.start()
            assert flush(collector)
        delivered = sorted(int(s.span_id, 16) - 0xB000 for s in backend.spans)
        # What survived is the newest spans, in one piece.
        assert list(range(requests * per_request - len(delivered), requests * per_request)) == delivered
        assert requests * per_request == dropped + len(delivered)
    finally:
        backend.stop()


def test_restart_with_a_non_empty_queue_resumes_delivery(tmp_path: Path) -> None:
    backend = GrpcBackend().start()
    backend.stop()
    config = exporter("backend", backend.endpoint)
    try:
        with run_collector(tmp_path, exporters=[config]) as collector:
            send(collector, [llm(i) for i in range(25)])
            # The exporters' section appears once the exporter process has reported; wait for it too.
            assert wait_for(lambda: health(collector).get("exporters", {}).get("backend", {}).get("queue_spans") == 25)
        queue_file = tmp_path / "spendgate-export-queue.db"
        assert queue_file.exists()

        backend.start()
        with run_collector(tmp_path, exporters=[config]) as collector:
            received = backend.wait_spans(25)
            assert flush(collector)
        assert 25 == len({s.span_id for s in received})
        assert pytest.approx(0.0028) == received[0].attributes[sc.LLM_COST_TOTAL]
    finally:
        backend.stop()


def test_a_slow_backend_does_not_slow_ingest(tmp_path: Path, backend: GrpcBackend) -> None:
    backend.delay_s = 0.5  # every export takes half a second: queued requests are sent merged
    with run_collector(tmp_path, exporters=[exporter("backend", backend.endpoint)]) as collector:
        acks = [send(collector, [llm(r * 10 + i) for i in range(10)]) for r in range(20)]
        assert max(acks) < 0.4, f"slowest acknowledgement {max(acks):.3f}s"
        assert 200 == collector.store.stats().rows_inserted
        backend.wait_spans(200, timeout=30)
