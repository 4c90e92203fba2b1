"""``Forwarder``: the export engine (persistent queue, enqueuer, one worker per exporter) in one process.

It runs in the exporters' own process (``process.py``), so that its CPU (rewriting spans, writing
and reading the queue, sending) never competes with ingest for the collector's interpreter lock;
it is also usable in-process, as the tests of the engine do.

1. ``submit`` appends stored batches to an in-memory hand-off (bounded in bytes: when full the
   oldest batch is dropped and counted) and wakes the enqueuer. It never logs, blocks or touches
   the disk.
2. One **enqueuer** thread rewrites each batch once per distinct filter setting (``enrich.py``),
   merges the result into requests of at most ``max_request_bytes``, appends them to the persistent
   queue (``queue.py``) in one transaction, trims each exporter's queue to its byte bound (dropping
   the oldest requests, counted and logged), then reports the batch queued (``on_queued``).
3. One **worker** thread per exporter sends its queue oldest first, merging queued requests up to
   ``max_request_bytes``. Success and permanent refusals delete what was sent; retryable failures
   keep it and wait a capped, jittered exponential backoff (at least the server's ``Retry-After`` /
   ``RetryInfo``). Nothing is dropped for being old or for failing often: only the queue bound, a
   permanent refusal or a backend's partial-success rejection drop spans.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .enrich import Enricher, SpanFilter, StoredRequest
from .queue import ExportQueue, QueuedItem, QueueTotals
from .senders import Outcome, Result, Sender, make_sender

if TYPE_CHECKING:
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
ATTEMPT_RESULTS = tuple(r.value for r in Result)


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
    attempts: dict[str, int]
    """Send attempts by result: ``success``, ``retryable``, ``permanent``."""
    send_seconds: float
    """Time spent in send attempts, in total."""
    last_error: str | None
    last_success_at: float | None
    """Unix time of the last accepted request."""


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
    attempts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTEMPT_RESULTS, 0))
    send_seconds: float = 0.0
    last_error: str | None = None
    last_success_at: float | None = None
    last_warned: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(slots=True)
class _Batch:
    requests: Sequence[StoredRequest]
    inserted: set[int] | None
    size: int
    token: Any


class Forwarder:
    """Persistent queue + enqueuer + one worker per exporter, with a start/shutdown lifecycle.

    ``on_queued(token)`` is called on the enqueuer thread once the batch submitted with ``token`` is
    in the persistent queue (or was dropped); the exporters' process uses it to acknowledge.
    """

    def __init__(
        self,
        configs: Sequence[ExporterConfig],
        queue_path: Path,
        on_queued: Callable[[Any], None] | None = None,
    ) -> None:
        self._configs = list(configs)
        self.queue_path = queue_path
        self._on_queued = on_queued
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
        self._last_totals: dict[str, QueueTotals] = {}  # what stats() shows once the queue is closed

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
            for exporter in self._exporters:
                self._last_totals[exporter.name] = self._queue.totals(exporter.name)
            self._queue.close()

    # --- intake: no logging, no I/O, never blocks

    def submit(self, requests: Sequence[StoredRequest], inserted: set[int] | None = None, token: Any = None) -> None:
        """Hand over stored requests; ``inserted`` holds the ``id()`` of the records newly stored
        (``None``: all were; the others are duplicates, not forwarded again)."""
        if self._closing or not self._exporters:
            if self._on_queued is not None:
                self._on_queued(token)
            return
        size = sum(len(r.payload) for r in requests)
        with self._cond:
            self._handoff.append(_Batch(requests, inserted, size, token))
            self._handoff_bytes += size
            while self._handoff_bytes > HANDOFF_MAX_BYTES and len(self._handoff) > 1:
                dropped = self._handoff.popleft()
                self._handoff_bytes -= dropped.size
                self._overflow_spans += sum(r.spans for r in dropped.requests)
                if self._on_queued is not None:
                    self._on_queued(dropped.token)
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
                spans = sum(r.spans for b in batches for r in b.requests)
                logger.exception("could not queue %d spans for export; they are dropped for export only", spans)
                for exporter in self._exporters:
                    self._count_drop(exporter, "error", spans, None)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                if self._on_queued is not None:
                    for batch in batches:
                        self._on_queued(batch.token)

    def _enqueue(self, batches: list[_Batch]) -> None:
        assert self._queue is not None
        rows: list[tuple[str, int, bytes]] = []
        for span_filter, exporters in self._groups.items():
            enricher = self._enrichers[span_filter]
            pieces: list[tuple[bytes, int]] = []
            for batch in batches:
                for request in batch.requests:
                    data, kept = enricher.transform(request, batch.inserted)
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
        started = time.perf_counter()
        outcome: Outcome = exporter.sender.send(item.payload)
        exporter.send_seconds += time.perf_counter() - started
        exporter.attempts[outcome.result.value] += 1
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
            if outcome.rejected_spans:
                self._count_drop(
                    exporter, "rejected", outcome.rejected_spans, f"backend rejected spans: {outcome.detail}"
                )
        exporter.state = "sending"
        backoff.reset()
        return 0.0

    # --- accounting

    def _count_drop(self, exporter: _Exporter, reason: str, spans: int, message: str | None) -> None:
        exporter.dropped[reason] += spans
        if message:
            self._warn(exporter, reason, "exporter %s: %s; %d spans dropped", exporter.name, message, spans)

    @staticmethod
    def _warn(exporter: _Exporter, kind: str, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - exporter.last_warned.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            exporter.last_warned[kind] = now
            logger.warning(fmt, *args)

    # --- introspection

    def stats(self) -> dict[str, ExporterStats]:
        """A snapshot per exporter, for ``/healthz``."""
        out: dict[str, ExporterStats] = {}
        now = time.time_ns()
        for e in self._exporters:
            if self._queue is not None and not self._stopped:
                self._last_totals[e.name] = self._queue.totals(e.name)
            totals = self._last_totals.get(e.name)
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
                attempts=dict(e.attempts),
                send_seconds=round(e.send_seconds, 6),
                last_error=e.last_error,
                last_success_at=e.last_success_at,
            )
        return out

    def idle(self) -> bool:
        """True when everything handed off has been sent or dropped."""
        with self._cond:
            if self._handoff or self._busy:
                return False
        queue = self._queue
        return queue is not None and all(queue.totals(e.name).items == 0 for e in self._exporters)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until ``idle()`` (for tests and flushes)."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


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
