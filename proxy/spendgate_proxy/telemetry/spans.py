"""From a finished call to an exported OpenTelemetry span, off the request path.

The request handler fills one ``CallRecord`` (a plain object, no OTel types) and hands it to
``SpanExportWorker.record`` once the call is over. A single worker thread drains a bounded queue
in batches into a ``RecordSink``: by default ``OTLPRecordSink``, which encodes records straight to
OTLP protobuf (``otlp_encode``) and sends them over gRPC or HTTP; or ``SDKRecordSink``, which
builds SDK spans for any standard ``SpanExporter`` (console, in-memory). Not running the OTel SDK
per request keeps the proxy's added latency and CPU low (docs/performance.md).

A sink may offer ``prepare``: ``OTLPRecordSink`` encodes each record as it is queued (~15 µs, in
the event loop, after the client has its last byte) rather than in the worker. The CPU is the
same; what changes is that the worker no longer holds the interpreter lock for tens of
milliseconds once a second (a batch of encoding), which is what a request arriving at that moment
used to wait for: the export thread then only hands bytes to gRPC, which runs without the lock.

Failed exports are put back at the head of the queue and retried with backoff, within the queue
bound, because a record is spend; what the bound forces out is counted in ``stats().dropped``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from spendgate_proxy.telemetry.otlp_encode import STATUS_ERROR, RequestEncoder, encode_attributes, encode_span
from spendgate_proxy.telemetry.otlp_export import GrpcSender, HttpSender, Outcome, Result
from spendgate_semconv import attributes as A

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from spendgate_proxy.attribution.chain import Attribution
    from spendgate_proxy.formats.canonical import Usage
    from spendgate_proxy.keys import Principal

logger = logging.getLogger(__name__)

SCOPE_NAME, SCOPE_VERSION = "spendgate.proxy", "0.1.0"
_ENCODE_SLICE = 32

_INVOCATION_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "reasoning_effort",
    "tool_choice",
    "parallel_tool_calls",
    "seed",
    "stop",
    "n",
)


@dataclass(slots=True, eq=False)
class CallRecord:
    """Everything one call's span needs, filled in by the request handler."""

    start_ns: int
    route: str
    trace_id: int
    span_id: int
    parent_span_id: int | None = None
    end_ns: int = 0
    principal: Principal | None = None
    attribution: Attribution | None = None
    feature: str | None = None
    requested_model: str | None = None
    served_model: str | None = None
    provider_id: str | None = None
    provider_system: str = "openai"
    server_address: str | None = None
    server_port: int | None = None
    stream: bool = False
    status_code: int = 0
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage | None = None
    usage_estimated: bool = False
    finish_reasons: tuple[str, ...] = ()
    response_id: str | None = None
    response_model: str | None = None
    ttft_ns: int | None = None
    disconnected: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    verdict: str | None = None
    routing_rule: str | None = None
    events: list[tuple[int, str, dict[str, Any]]] | None = None
    """``(time_ns, name, attributes)`` span events, e.g. one per fallback attempt."""
    input_text: str | None = None
    output_text: str | None = None

    def note_attempt(
        self, model: str, provider: str, error: str | None, status: int | None = None, retry_after_s: float = 0.0
    ) -> None:
        """Record one upstream attempt as a span event (fallbacks only; the happy path records none)."""
        attrs: dict[str, Any] = {A.SPENDGATE_MODEL_SERVED: model, A.SPENDGATE_PROVIDER_ID: provider}
        if status is not None:
            attrs[A.SPENDGATE_HTTP_STATUS] = status
        if error is not None:
            attrs[A.ERROR_TYPE] = error
        if retry_after_s:
            attrs[A.SPENDGATE_RETRY_AFTER_S] = retry_after_s
        if self.events is None:
            self.events = []
        self.events.append((time.time_ns(), A.EVENT_ATTEMPT, attrs))


def invocation_params(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters worth recording; never message content."""
    return {k: body[k] for k in _INVOCATION_PARAMS if k in body}


def span_attributes(rec: CallRecord) -> dict[str, Any]:
    """The semconv attributes of one call (both OpenInference and GenAI names): who and what
    (``static_attributes``), then how this call went (``call_attributes``)."""
    return {**static_attributes(rec), **call_attributes(rec)}


def _static_key(rec: CallRecord) -> tuple[Any, ...]:
    """Everything ``static_attributes`` reads: calls with equal keys share those attributes."""
    return (
        rec.route,
        rec.provider_system,
        rec.requested_model,
        rec.served_model,
        rec.provider_id,
        rec.server_address,
        rec.server_port,
        rec.stream,
        rec.principal,
        rec.attribution,
        rec.feature,
    )


def static_attributes(rec: CallRecord) -> dict[str, Any]:
    """The attributes that repeat for every call of one developer, repo, feature and model.

    Reads only the fields in ``_static_key``: ``encode_record`` encodes them once per key.
    """
    model = rec.served_model or rec.requested_model or "unknown"
    attrs: dict[str, Any] = {
        A.OPENINFERENCE_SPAN_KIND: A.SPAN_KIND_LLM,
        A.GEN_AI_OPERATION_NAME: A.GEN_AI_OPERATION_CHAT,
        A.LLM_SYSTEM: rec.provider_system,
        A.LLM_PROVIDER: rec.provider_system,
        A.GEN_AI_PROVIDER_NAME: rec.provider_system,
        A.LLM_MODEL_NAME: model,
        A.GEN_AI_REQUEST_MODEL: rec.requested_model or model,
        A.SPENDGATE_MODEL_REQUESTED: rec.requested_model or model,
        A.SPENDGATE_MODEL_SERVED: model,
        A.SPENDGATE_ROUTE: rec.route,
        A.SPENDGATE_STREAM: rec.stream,
    }
    if rec.provider_id:
        attrs[A.SPENDGATE_PROVIDER_ID] = rec.provider_id
    if rec.server_address:
        attrs[A.SERVER_ADDRESS] = rec.server_address
        if rec.server_port:
            attrs[A.SERVER_PORT] = rec.server_port
    metadata: dict[str, Any] = {}
    p = rec.principal
    if p is not None:
        attrs[A.USER_ID] = p.user
        attrs[A.SPENDGATE_KEY_ID] = p.key_id
        metadata["user"] = p.user
        if p.team:
            attrs[A.SPENDGATE_TEAM] = metadata["team"] = p.team
        if p.cost_center:
            attrs[A.SPENDGATE_COST_CENTER] = metadata["cost_center"] = p.cost_center
    a = rec.attribution
    if a is not None:
        attrs[A.SPENDGATE_REPO_SOURCE] = a.repo_source
        if a.repo:
            attrs[A.VCS_REPOSITORY_NAME] = metadata["repo"] = a.repo
        if a.repo_url:
            attrs[A.VCS_REPOSITORY_URL_FULL] = a.repo_url
        if a.branch:
            attrs[A.VCS_REF_HEAD_NAME] = metadata["branch"] = a.branch
        if a.tags:
            attrs[A.TAG_TAGS] = list(a.tags)
    if rec.feature:
        attrs[A.SPENDGATE_FEATURE] = metadata["feature"] = rec.feature
    if metadata:
        attrs[A.METADATA] = orjson.dumps(metadata).decode()
    return attrs


def call_attributes(rec: CallRecord) -> dict[str, Any]:
    """The attributes of this call alone: status, parameters, response, usage, timing, errors."""
    attrs: dict[str, Any] = {A.SPENDGATE_HTTP_STATUS: rec.status_code}
    if rec.session_id:
        attrs[A.SESSION_ID] = rec.session_id
    if rec.params:
        attrs[A.LLM_INVOCATION_PARAMETERS] = orjson.dumps(rec.params).decode()
        max_tokens = rec.params.get("max_completion_tokens", rec.params.get("max_tokens"))
        if isinstance(max_tokens, int):
            attrs[A.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if isinstance(rec.params.get("temperature"), int | float):
            attrs[A.GEN_AI_REQUEST_TEMPERATURE] = float(rec.params["temperature"])
    if rec.response_id:
        attrs[A.GEN_AI_RESPONSE_ID] = rec.response_id
    if rec.response_model:
        attrs[A.GEN_AI_RESPONSE_MODEL] = rec.response_model
    if rec.finish_reasons:
        attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = list(rec.finish_reasons)
    u = rec.usage
    if u is not None:
        attrs[A.LLM_TOKEN_COUNT_PROMPT] = attrs[A.GEN_AI_USAGE_INPUT_TOKENS] = u.input_tokens
        attrs[A.LLM_TOKEN_COUNT_COMPLETION] = attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] = u.output_tokens
        attrs[A.LLM_TOKEN_COUNT_TOTAL] = u.input_tokens + u.output_tokens
        attrs[A.LLM_TOKEN_COUNT_PROMPT_CACHE_READ] = u.cache_read_tokens
        attrs[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = u.cache_read_tokens
        attrs[A.LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE] = u.cache_write_tokens
        attrs[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = u.cache_write_tokens
        attrs[A.LLM_TOKEN_COUNT_COMPLETION_REASONING] = u.reasoning_tokens
        attrs[A.SPENDGATE_USAGE_SOURCE] = A.UsageSource.ESTIMATE if rec.usage_estimated else A.UsageSource.PROVIDER
    if rec.ttft_ns is not None:
        attrs[A.SPENDGATE_TTFT_MS] = round((rec.ttft_ns - rec.start_ns) / 1e6, 3)
    if rec.disconnected:
        attrs[A.SPENDGATE_CLIENT_DISCONNECTED] = True
    if rec.verdict:
        attrs[A.SPENDGATE_VERDICT] = rec.verdict
    if rec.routing_rule:
        attrs[A.SPENDGATE_ROUTING_RULE] = rec.routing_rule
    if rec.error_type:
        attrs[A.ERROR_TYPE] = rec.error_type
    if rec.input_text is not None:
        attrs[A.INPUT_VALUE] = rec.input_text
    if rec.output_text is not None:
        attrs[A.OUTPUT_VALUE] = rec.output_text
    return attrs


def build_span(rec: CallRecord, resource: Resource) -> ReadableSpan:
    """The SDK span for one record (for SDK exporters: console, in-memory in tests)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(rec.trace_id, rec.span_id, is_remote=False, trace_flags=flags)
    parent = None
    if rec.parent_span_id:
        parent = SpanContext(rec.trace_id, rec.parent_span_id, is_remote=True, trace_flags=flags)
    failed = _failed(rec)
    status = Status(StatusCode.ERROR, rec.error_message or rec.error_type) if failed else Status()
    from opentelemetry.sdk.trace import Event

    events = [Event(name, attributes=attrs, timestamp=ts) for ts, name, attrs in rec.events or ()]
    return ReadableSpan(
        name=_name(rec),
        events=events,
        context=context,
        parent=parent,
        resource=resource,
        attributes=span_attributes(rec),
        kind=SpanKind.CLIENT,
        status=status,
        start_time=rec.start_ns,
        end_time=rec.end_ns or rec.start_ns,
        instrumentation_scope=InstrumentationScope(SCOPE_NAME, SCOPE_VERSION),
    )


_STATIC_CACHE_MAX = 4096
"""Encoded static attribute groups kept; past this the cache starts over."""
_static_cache: dict[tuple[Any, ...], bytes] = {}


def encode_record(rec: CallRecord) -> bytes:
    """The OTLP ``Span`` bytes for one record (same content as ``build_span``, ~8x cheaper).

    The static attributes (two thirds of a span's) are encoded once per developer, repo, feature
    and model and reused: a call only encodes what is its own.
    """
    key = _static_key(rec)
    static = _static_cache.get(key)
    if static is None:
        if len(_static_cache) >= _STATIC_CACHE_MAX:
            _static_cache.clear()
        static = _static_cache[key] = encode_attributes(static_attributes(rec), b"\x4a")
    failed = _failed(rec)
    return encode_span(
        trace_id=rec.trace_id,
        span_id=rec.span_id,
        parent_span_id=rec.parent_span_id,
        name=_name(rec),
        start_ns=rec.start_ns,
        end_ns=rec.end_ns or rec.start_ns,
        encoded_attributes=static,
        attributes=call_attributes(rec),
        status_code=STATUS_ERROR if failed else 0,
        status_message=(rec.error_message or rec.error_type) if failed else None,
        events=rec.events,
    )


def _name(rec: CallRecord) -> str:
    return f"chat {rec.served_model or rec.requested_model or 'unknown'}"


def _failed(rec: CallRecord) -> bool:
    """A client that leaves is not a failure of the call: such spans keep an unset status."""
    return rec.error_type is not None and not rec.disconnected


class RecordSink(Protocol):
    """Where batches of records go: one attempt per ``export``, classified for the worker's retry."""

    def export(self, records: list[Any]) -> Outcome: ...

    def shutdown(self) -> None: ...


class OTLPRecordSink:
    """Encodes records straight to OTLP protobuf and sends them with a gRPC or HTTP sender."""

    def __init__(self, sender: GrpcSender | HttpSender, resource: Resource) -> None:
        self._sender = sender
        self._encoder = RequestEncoder(dict(resource.attributes), SCOPE_NAME, SCOPE_VERSION)

    def prepare(self, rec: CallRecord) -> bytes:
        """The record's ``Span`` bytes, made as it is queued (see the module docstring)."""
        return encode_record(rec)

    def export(self, records: list[CallRecord | bytes]) -> Outcome:
        """Send a batch of prepared spans (bytes) or, should preparing one have failed, records."""
        spans: list[bytes] = []
        for i in range(0, len(records), _ENCODE_SLICE):
            part = records[i : i + _ENCODE_SLICE]
            if all(r.__class__ is bytes for r in part):
                spans.extend(part)  # type: ignore[arg-type]
                continue
            spans.extend([r if r.__class__ is bytes else encode_record(r) for r in part])  # type: ignore[misc]
            # Hand the GIL back to the event loop between slices of encoding here, off the loop.
            time.sleep(0)
        return self._sender.send(self._encoder.encode(spans))

    def shutdown(self) -> None:
        self._sender.shutdown()


class SDKRecordSink:
    """Builds SDK spans and hands them to any OTel ``SpanExporter`` (console, in-memory, ...)."""

    def __init__(self, exporter: SpanExporter, resource: Resource) -> None:
        self._exporter = exporter
        self._resource = resource

    def export(self, records: list[CallRecord]) -> Outcome:
        from opentelemetry.sdk.trace.export import SpanExportResult

        ok = self._exporter.export([build_span(r, self._resource) for r in records]) == SpanExportResult.SUCCESS
        return Outcome(Result.SUCCESS if ok else Result.RETRYABLE)

    def shutdown(self) -> None:
        self._exporter.shutdown()


@dataclass(frozen=True, slots=True)
class ExportStats:
    """A snapshot of the worker's counters, for /healthz and tests."""

    queued: int
    exported: int
    failed_attempts: int
    dropped: int


class SpanExportWorker:
    """Bounded queue of call records, drained by one thread that encodes and exports them.

    ``record`` is the only method called on the request path: an append and, when a batch is
    full, an event set. Do not log there. ``shutdown`` flushes what is queued (within its timeout)
    and is safe to call twice or before ``start``.
    """

    def __init__(
        self,
        sink: RecordSink,
        *,
        interval_s: float = 1.0,
        max_batch: int = 512,
        max_queue: int = 65536,
    ) -> None:
        self._sink = sink
        self._interval = interval_s
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: deque[Any] = deque()  # records, or what the sink's ``prepare`` made of them
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._exported = 0
        self._failed = 0
        self._dropped = 0
        self._retry_after = 0.0
        self._prepare = getattr(sink, "prepare", None)
        self._prepare_error: Exception | None = None

    def start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="spendgate-span-export", daemon=True)
            self._thread.start()

    def record(self, rec: CallRecord) -> None:
        """Queue one record, prepared by the sink if it can (request path: no I/O, no logging, no locks)."""
        if len(self._queue) >= self._max_queue:
            self._dropped += 1
            return
        item: Any = rec
        if self._prepare is not None:
            try:
                item = self._prepare(rec)
            except Exception as exc:  # a record that cannot be encoded never can: count it, log it in the worker
                self._dropped += 1
                self._prepare_error = exc
                return
        self._queue.append(item)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    def stats(self) -> ExportStats:
        return ExportStats(len(self._queue), self._exported, self._failed, self._dropped)

    def _export_once(self) -> bool:
        """Export one batch; returns False when it must be retried later (batch put back)."""
        batch: list[Any] = []
        with contextlib.suppress(IndexError):
            while len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
        if not batch:
            return True
        try:
            outcome = self._sink.export(batch)
        except Exception:  # a sink must never take the proxy down
            logger.exception("span export raised")
            outcome = Outcome(Result.RETRYABLE)
        if outcome.result is Result.SUCCESS:
            self._exported += len(batch)
            return True
        if outcome.result is Result.PERMANENT:
            self._dropped += len(batch)
            logger.warning("span receiver refused %d spans permanently (%s); dropped", len(batch), outcome.detail)
            return True
        self._failed += 1
        self._retry_after = outcome.retry_after_s or 0.0
        room = self._max_queue - len(self._queue)
        keep = batch[:room] if room > 0 else []
        self._dropped += len(batch) - len(keep)
        self._queue.extendleft(reversed(keep))  # oldest spend first on the next try
        return False

    def _drain(self) -> bool:
        error, self._prepare_error = self._prepare_error, None
        if error is not None:
            logger.error("a call record could not be encoded and was dropped (%s)", type(error).__name__)
        while self._queue:
            if not self._export_once():
                return False
        return True

    def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.wait(backoff or self._interval)
            self._wake.clear()
            target = self._flush_requested
            ok = self._drain()
            if ok:
                backoff = 0.0
            else:  # capped exponential backoff with jitter, never shorter than the server asked
                backoff = min(max(backoff * 2, 0.5), 30.0) * random.uniform(0.8, 1.2)
                backoff = max(backoff, self._retry_after)
            with self._idle:
                if ok or self._stopping:
                    self._flushed = max(self._flushed, target)
                self._idle.notify_all()
            if self._stopping:
                return

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued at the time of the call; True when it went out within the timeout.

        Records queued while the flush runs may go out with it or with the next batch.
        """
        if self._thread is None:
            return self._drain()
        with self._idle:
            self._flush_requested += 1
            target = self._flush_requested
            self._wake.set()
            deadline = time.monotonic() + timeout_s
            while self._flushed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush within the timeout, stop the thread, shut the sink down. Idempotent."""
        if self._stopping:
            return
        if self._thread is not None:
            self.force_flush(timeout_s)
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with contextlib.suppress(Exception):
            self._sink.shutdown()


def make_sink(telemetry: Any, resource: Resource) -> RecordSink | None:
    """The sink the telemetry settings name; OTLP endpoint and protocol fall back to OTEL_* env."""
    import os

    if telemetry.exporter == "none":
        return None
    if telemetry.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return SDKRecordSink(ConsoleSpanExporter(), resource)
    protocol = (
        telemetry.protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol == "grpc":
        return OTLPRecordSink(GrpcSender(telemetry.endpoint), resource)
    if protocol == "http/protobuf":
        return OTLPRecordSink(HttpSender(telemetry.endpoint), resource)
    raise ValueError(f"telemetry.protocol: unsupported OTLP protocol {protocol!r} (grpc or http/protobuf)")


def proxy_resource(service_name: str, proxy_id: str | None = None) -> Resource:
    """The proxy's OTel resource: service name (``OTEL_SERVICE_NAME`` wins), this instance and, when
    given, its control-plane id (``spendgate.proxy.id``: the collector lists proxies that send spans
    without holding a control stream)."""
    import os

    from opentelemetry.sdk.resources import Resource

    attributes = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME", service_name),
        "service.instance.id": f"{os.uname().nodename}-{os.getpid()}",
    }
    if proxy_id:
        attributes[A.SPENDGATE_PROXY_ID] = proxy_id
    return Resource.create(attributes)


def worker_from_settings(
    telemetry: Any, sink: RecordSink | None = None, *, proxy_id: str | None = None
) -> SpanExportWorker | None:
    """The span worker the telemetry settings ask for (None when the exporter is ``none``);
    ``proxy_id`` goes on the spans' resource (``control.proxy_id_for``)."""
    sink = sink or make_sink(telemetry, proxy_resource(telemetry.service_name, proxy_id))
    if sink is None:
        return None
    return SpanExportWorker(
        sink,
        interval_s=telemetry.export_interval_s,
        max_batch=telemetry.max_batch,
        max_queue=telemetry.max_queue,
    )
