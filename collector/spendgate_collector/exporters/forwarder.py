"""``ExportManager``: forward what the pipeline stored to every configured exporter, off the ingest path.

Three kinds of threads, so that no exporter can slow or block ingest:

1. The pipeline's writer thread calls ``after_commit`` once a batch is durable in the store. That
   only appends the batch to an in-memory hand-off (bounded in bytes; when full the oldest batch is
   dropped and counted) and wakes the enqueuer. It never logs, blocks or touches the disk.
2. One **enqueuer** thread rewrites each batch once per distinct filter setting (``enrich.py``),
   merges the result into requests of at most ``max_request_bytes``, appends them to the persistent
   queue (``queue.py``) in one transaction, and trims each exporter's queue to its byte bound,
   dropping the oldest requests (counted and logged).
3. One **worker** thread per exporter sends its queue oldest first, one request at a time. Success
   and permanent refusals delete the request; retryable failures keep it and wait a capped,
   jittered exponential backoff (at least the server's ``Retry-After`` / ``RetryInfo``). Nothing is
   dropped for being old or for failing often: only the queue bound, a permanent refusal or a
   backend's partial-success rejection drop spans.

On restart the queue resumes where it stopped. Shutdown moves everything handed off into the queue,
cuts the workers' backoff short and interrupts a send in flight (it is sent again after restart: a
backend may then see that request twice; OTLP delivery is at least once).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .enrich import Enricher, SpanFilter, StoredRequest
from .queue import ExportQueue, QueuedItem
from .senders import Outcome, Result, Sender, make_sender

if TYPE_CHECKING:
    from ..records import SpendRecord
    from .config import ExporterConfig

logger = logging.getLogger(__name__)

# Stored batches waiting for the enqueuer, in payload bytes. The enqueuer normally keeps it near
# empty; this only bounds memory if the disk stalls.
HANDOFF_MAX_BYTES = 64 * 1024 * 1024
# A server's throttle hint is honoured up to this long (a bogus "retry in a day" must not park us).
MAX_RETRY_HINT_S = 300.0
JITTER = 0.2
# How long shutdown waits for a worker to return after its send was interrupted.
WORKER_JOIN_S = 5.0
# Repeated warnings of one kind (drops, refusals, backend down) are logged at most this often.
LOG_EVERY_S = 30.0

DROP_REASONS = ("queue_full", "permanent", "rejected", "overflow", "error")


class Backoff:
    """Capped exponential backoff with ±20 % jitter; waits at least a server's hint."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0

    def next_delay(self, hint_s: float | None = None) -> float:
        base = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        delay = base * random.uniform(1 - JITTER, 1 + JITTER)
        if hint_s is not None:
            delay = max(delay, min(hint_s, MAX_RETRY_HINT_S))
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class ExporterStats:
    """A snapshot of one exporter, for ``/healthz``."""

    name: str
    protocol: str
    endpoint: str
    llm_only: bool
    drop_content: bool
    state: str
    """``idle`` (queue empty), ``sending``, or ``retrying`` (backend failing; see ``last_error``)."""
    queue_requests: int
    queue_spans: int
    queue_bytes: int
    queue_max_bytes: int
    oldest_queued_s: float | None
    """Age of the oldest queued request, seconds."""
    sent_spans: int
    sent_requests: int
    retries: int
    dropped_spans: dict[str, int]
    """By reason: ``queue_full``, ``permanent``, ``rejected`` (partial success), ``overflow``, ``error``."""
    last_error: str | None
    last_success_at: float | None
    """Unix time of the last accepted request."""


class _Metrics:
    """The exporters' Prometheus metrics, registered in the collector's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "spendgate_collector_exporter_sent_spans",
            "Spans accepted by an exporter's backend.",
            ["exporter"],
            registry=registry,
        )
        self.dropped = Counter(
            "spendgate_collector_exporter_dropped_spans",
            "Spans an exporter gave up on, by reason (queue_full, permanent, rejected, overflow, error).",
            ["exporter", "reason"],
            registry=registry,
        )
        self.attempts = Counter(
            "spendgate_collector_exporter_send_attempts",
            "Requests sent to a backend, by result (success, retryable, permanent).",
            ["exporter", "result"],
            registry=registry,
        )
        self.queue_spans = Gauge(
            "spendgate_collector_exporter_queue_spans",
            "Spans waiting in an exporter's queue.",
            ["exporter"],
            registry=registry,
        )
        self.queue_bytes = Gauge(
            "spendgate_collector_exporter_queue_bytes",
            "Bytes waiting in an exporter's persistent queue.",
            ["exporter"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "spendgate_collector_exporter_send_seconds",
            "Time of one send attempt to a backend.",
            ["exporter"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )


@dataclass(slots=True)
class _Exporter:
    """One configured exporter and its worker's state."""

    config: ExporterConfig
    sender: Sender
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    state: str = "idle"
    sent_spans: int = 0
    sent_requests: int = 0
    retries: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    last_error: str | None = None
    last_success_at: float | None = None
    last_warned: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(slots=True)
class _Batch:
    requests: list[tuple[bytes, int, list[SpendRecord]]]
    inserted: set[int] | None
    size: int


class ExportManager:
    """Persistent queue + enqueuer + one worker per exporter, with a start/shutdown lifecycle."""

    def __init__(self, configs: Sequence[ExporterConfig], queue_path: Path, registry: CollectorRegistry) -> None:
        self._configs = list(configs)
        self.queue_path = queue_path
        self._metrics = _Metrics(registry)
        self._queue: ExportQueue | None = None
        self._exporters: list[_Exporter] = []
        # Exporters grouped by filter, so a batch is rewritten once per distinct setting.
        self._groups: dict[SpanFilter, list[_Exporter]] = {}
        self._enrichers: dict[SpanFilter, Enricher] = {}
        self._handoff: collections.deque[_Batch] = collections.deque()
        self._handoff_bytes = 0
        self._overflow_spans = 0  # written by the writer thread, logged by the enqueuer
        self._cond = threading.Condition()
        self._busy = False  # the enqueuer is between taking batches and queueing them
        self._enqueuer: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = False
        self._stopped = False

    # --- lifecycle

    def start(self) -> None:
        """Open the queue, build the senders and start the threads; returns at once."""
        if self._queue is not None or self._stopped:
            return
        self._queue = ExportQueue(self.queue_path)
        for config in self._configs:
            exporter = _Exporter(config, make_sender(config))
            self._exporters.append(exporter)
            self._groups.setdefault(config.span_filter, []).append(exporter)
            self._publish(exporter)
        for span_filter in self._groups:
            self._enrichers[span_filter] = Enricher(span_filter)
        configured = {c.name for c in self._configs}
        for name in self._queue.exporters_with_rows():
            totals = self._queue.totals(name)
            if name in configured:
                logger.info("exporter %s resumes with %d spans queued", name, totals.spans)
            else:
                logger.warning(
                    "export queue %s holds %d spans for exporter %r, which is no longer configured; "
                    "they are kept until it is configured again",
                    self.queue_path,
                    totals.spans,
                    name,
                )
        self._enqueuer = threading.Thread(target=self._run_enqueuer, name="spendgate-export-enqueuer", daemon=True)
        self._enqueuer.start()
        for exporter in self._exporters:
            exporter.thread = threading.Thread(
                target=self._run_worker, args=(exporter,), name=f"spendgate-export-{exporter.name}", daemon=True
            )
            exporter.thread.start()
            exporter.wake.set()  # send what a previous run left queued
        logger.info(
            "exporters started: %s (queue %s)",
            ", ".join(f"{e.name}={e.sender.description}" for e in self._exporters),
            self.queue_path,
        )

    def shutdown(self, timeout: float = 10.0) -> None:
        """Queue everything handed off, stop the workers, close the queue. Idempotent; blocks."""
        if self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._enqueuer is not None:
            self._enqueuer.join(timeout)
        self._stop.set()
        for exporter in self._exporters:
            exporter.wake.set()
            exporter.sender.close()
        for exporter in self._exporters:
            if exporter.thread is not None:
                exporter.thread.join(WORKER_JOIN_S)
        if self._queue is not None:
            self._queue.close()

    # --- intake (pipeline writer thread): no logging, no I/O, never blocks

    def after_commit(self, requests: list[tuple[bytes, int, list[SpendRecord]]], inserted: list[SpendRecord]) -> None:
        """Hand over requests whose spans are now durable; ``inserted`` are the records newly stored."""
        if self._closing or not self._exporters:
            return
        total = sum(len(records) for _, _, records in requests)
        # Only when some records were duplicates do we need to know which ones (rare: client retries).
        inserted_ids = None if len(inserted) == total else {id(r) for r in inserted}
        size = sum(len(payload) for payload, _, _ in requests)
        with self._cond:
            self._handoff.append(_Batch(requests, inserted_ids, size))
            self._handoff_bytes += size
            while self._handoff_bytes > HANDOFF_MAX_BYTES and len(self._handoff) > 1:
                dropped = self._handoff.popleft()
                self._handoff_bytes -= dropped.size
                self._overflow_spans += sum(spans for _, spans, _ in dropped.requests)
            self._cond.notify()

    # --- enqueuer thread

    def _run_enqueuer(self) -> None:
        while True:
            with self._cond:
                while not self._handoff and not self._closing:
                    self._cond.wait()
                if not self._handoff:  # closing and drained
                    return
                batches = list(self._handoff)
                self._handoff.clear()
                self._handoff_bytes = 0
                overflow, self._overflow_spans = self._overflow_spans, 0
                self._busy = True
            try:
                if overflow:
                    for exporter in self._exporters:
                        self._count_drop(exporter, "overflow", overflow, "export hand-off full (queue writes too slow)")
                self._enqueue(batches)
            except Exception:
                # Only a failing queue file gets here (disk full, I/O error); the spans stay in the store.
                spans = sum(spans for b in batches for _, spans, _ in b.requests)
                logger.exception("could not queue %d spans for export; they are dropped for export only", spans)
                for exporter in self._exporters:
                    self._count_drop(exporter, "error", spans, None)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _enqueue(self, batches: list[_Batch]) -> None:
        assert self._queue is not None
        rows: list[tuple[str, int, bytes]] = []
        for span_filter, exporters in self._groups.items():
            enricher = self._enrichers[span_filter]
            pieces: list[tuple[bytes, int]] = []
            for batch in batches:
                for payload, spans, records in batch.requests:
                    data, kept = enricher.transform(StoredRequest(payload, spans, records), batch.inserted)
                    if kept:
                        pieces.append((data, kept))
            for exporter in exporters:
                merged = _merge(pieces, exporter.config.max_request_bytes)
                rows.extend((exporter.name, spans, data) for data, spans in merged)
        self._queue.put(rows)
        for exporter in self._exporters:
            requests, spans = self._queue.trim(exporter.name, exporter.config.queue_max_bytes)
            if spans:
                self._count_drop(
                    exporter,
                    "queue_full",
                    spans,
                    f"queue full ({exporter.config.queue_max_bytes} bytes): dropped the oldest {requests} requests",
                )
            self._publish(exporter)
            exporter.wake.set()

    # --- worker threads

    def _run_worker(self, exporter: _Exporter) -> None:
        assert self._queue is not None
        queue = self._queue
        backoff = Backoff(exporter.config.retry_initial_s, exporter.config.retry_max_s)
        while not self._stop.is_set():
            exporter.wake.clear()
            try:
                item = queue.peek(exporter.name, exporter.config.max_request_bytes)
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("exporter %s: cannot read its queue", exporter.name)
                self._stop.wait(backoff.next_delay())
                continue
            if item is None:
                exporter.state = "idle"
                exporter.wake.wait(1.0)
                continue
            if exporter.state == "idle":
                exporter.state = "sending"
            try:
                delay = self._deliver(exporter, item, backoff)
            except Exception as exc:  # a bug or a closed queue: keep the item, try again later
                if self._stop.is_set():
                    return
                logger.exception("exporter %s: send failed unexpectedly", exporter.name)
                exporter.last_error = f"{type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
            if delay:
                self._stop.wait(delay)

    def _deliver(self, exporter: _Exporter, item: QueuedItem, backoff: Backoff) -> float:
        """Send one queued request; return how long to wait before the next attempt."""
        assert self._queue is not None
        m = self._metrics
        started = time.perf_counter()
        outcome: Outcome = exporter.sender.send(item.payload)
        m.send_seconds.labels(exporter.name).observe(time.perf_counter() - started)
        m.attempts.labels(exporter.name, outcome.result.value).inc()
        if outcome.result is Result.RETRYABLE:
            self._queue.release(exporter.name)
            if self._stop.is_set():
                return 0.0
            exporter.retries += 1
            exporter.state = "retrying"
            exporter.last_error = outcome.detail
            delay = backoff.next_delay(outcome.retry_after_s)
            self._warn(exporter, "retry", "exporter %s: %s; retrying in %.1fs", exporter.name, outcome.detail, delay)
            return delay
        self._queue.remove(exporter.name, item)
        if outcome.result is Result.PERMANENT:
            exporter.last_error = outcome.detail
            refused = f"backend refused a request for good ({outcome.detail})"
            self._count_drop(exporter, "permanent", item.spans, refused)
        else:
            delivered = max(0, item.spans - outcome.rejected_spans)
            exporter.sent_spans += delivered
            exporter.sent_requests += 1
            exporter.last_success_at = time.time()
            m.sent.labels(exporter.name).inc(delivered)
            if outcome.rejected_spans:
                self._count_drop(
                    exporter, "rejected", outcome.rejected_spans, f"backend rejected spans: {outcome.detail}"
                )
        exporter.state = "sending"
        backoff.reset()
        self._publish(exporter)
        return 0.0

    # --- accounting

    def _count_drop(self, exporter: _Exporter, reason: str, spans: int, message: str | None) -> None:
        exporter.dropped[reason] += spans
        self._metrics.dropped.labels(exporter.name, reason).inc(spans)
        if message:
            self._warn(exporter, reason, "exporter %s: %s; %d spans dropped", exporter.name, message, spans)

    @staticmethod
    def _warn(exporter: _Exporter, kind: str, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - exporter.last_warned.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            exporter.last_warned[kind] = now
            logger.warning(fmt, *args)

    def _publish(self, exporter: _Exporter) -> None:
        if self._queue is None:
            return
        totals = self._queue.totals(exporter.name)
        self._metrics.queue_spans.labels(exporter.name).set(totals.spans)
        self._metrics.queue_bytes.labels(exporter.name).set(totals.bytes)

    # --- introspection

    def stats(self) -> dict[str, ExporterStats]:
        """A snapshot per exporter, for ``/healthz``."""
        out: dict[str, ExporterStats] = {}
        now = time.time_ns()
        for e in self._exporters:
            totals = self._queue.totals(e.name) if self._queue is not None and not self._stopped else None
            out[e.name] = ExporterStats(
                name=e.name,
                protocol=e.config.protocol,
                endpoint=e.sender.description,
                llm_only=e.config.llm_only,
                drop_content=e.config.drop_content,
                state=e.state,
                queue_requests=totals.items if totals else 0,
                queue_spans=totals.spans if totals else 0,
                queue_bytes=totals.bytes if totals else 0,
                queue_max_bytes=e.config.queue_max_bytes,
                oldest_queued_s=(now - totals.oldest_ns) / 1e9 if totals and totals.oldest_ns else None,
                sent_spans=e.sent_spans,
                sent_requests=e.sent_requests,
                retries=e.retries,
                dropped_spans=dict(e.dropped),
                last_error=e.last_error,
                last_success_at=e.last_success_at,
            )
        return out

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed off has been sent or dropped (for tests and ``force_flush``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                handed = bool(self._handoff) or self._busy
            if (
                not handed
                and self._queue is not None
                and all(self._queue.totals(e.name).items == 0 for e in self._exporters)
            ):
                return True
            time.sleep(0.01)
        return False


def _merge(pieces: list[tuple[bytes, int]], max_bytes: int) -> list[tuple[bytes, int]]:
    """Concatenate request bytes into requests of at most ``max_bytes`` (a larger piece goes alone).

    Concatenating serialised ``ExportTraceServiceRequest``s is itself a valid request holding all
    their ``resource_spans`` (protobuf merges repeated fields), so no re-encoding is needed.
    """
    out: list[tuple[bytes, int]] = []
    chunk: list[bytes] = []
    size = spans = 0
    for data, count in pieces:
        if chunk and size + len(data) > max_bytes:
            out.append((b"".join(chunk), spans))
            chunk, size, spans = [], 0, 0
        chunk.append(data)
        size += len(data)
        spans += count
    if chunk:
        out.append((b"".join(chunk), spans))
    return out
