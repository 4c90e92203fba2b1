"""The ingest pipeline: receiver → normalise → price → store (+ rollups), with back-pressure and batching.

Receivers hand each OTLP export request, still as protobuf bytes, to ``Pipeline.export``. It is
admitted to a queue bounded in bytes (full → ``Overloaded``, which receivers answer with a retryable
status and a retry hint). One writer task takes everything queued (up to ``batch_max_bytes``) and
runs the stages on a dedicated thread, so the event loop keeps receiving while SQLite commits: each
request is parsed and normalised, its records priced, and the whole batch written in one
transaction. Only then is each request's future resolved, so an exporter is acknowledged only after
its spans are durable. If the commit fails, every request of the batch gets a retryable error and
nothing of it is kept (the transaction rolled back); the retry is safe because writes are idempotent.

Only this module knows the order of the stages; the stages do not import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CollectorError, InvalidPayload, Overloaded, ShuttingDown, StoreUnavailable
from ..metrics import CollectorMetrics
from ..pricing.stage import PricingStage
from ..records import SpendRecord
from ..store.base import CompanionWrites, SpendStore, WriteResult
from .normalize import Normalizer
from .otlp import parse_export_request

if TYPE_CHECKING:
    from ..budgets import BudgetEngine

logger = logging.getLogger(__name__)

AfterCommit = Callable[[list[tuple[bytes, int, list[SpendRecord]]], list[SpendRecord]], None]
"""Called on the writer thread once a batch is durable, with ``(payload, spans, records)`` per stored
request and the records newly inserted. Must not block (the exporters only hand the batch over)."""

PURGE_INTERVAL_S = 3600.0
PURGE_CHUNK_ROWS = 10_000
_NANOS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """How one export request went, for the receiver's answer."""

    spans: int
    rejected: int
    message: str = ""
    """Why spans were rejected (OTLP ``partial_success.error_message``); empty when none were."""


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A snapshot for ``/healthz``."""

    running: bool
    queued_requests: int
    queued_bytes: int
    queue_max_bytes: int
    batches: int
    overloaded: int


@dataclass(slots=True)
class _Pending:
    payload: bytes
    receiver: str
    future: asyncio.Future[ExportOutcome]


def _outcome_label(exc: CollectorError) -> str:
    return "invalid" if isinstance(exc, InvalidPayload) else "store_unavailable"


class Pipeline:
    """Bounded queue + single writer running normalise → price → store on its own thread."""

    def __init__(
        self,
        store: SpendStore,
        normalizer: Normalizer,
        pricing: PricingStage,
        metrics: CollectorMetrics,
        *,
        queue_max_bytes: int,
        batch_max_bytes: int,
        retention_days: int = 0,
        budgets: BudgetEngine | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._store = store
        self._budgets = budgets
        self._after_commit = after_commit
        self._normalizer = normalizer
        self._pricing = pricing
        self._metrics = metrics
        self._queue_max_bytes = queue_max_bytes
        self._batch_max_bytes = batch_max_bytes
        self._retention_days = retention_days
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._queued_bytes = 0
        self._queued_requests = 0
        self._batches = 0
        self._overloaded = 0
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._next_purge = 0.0

    # --- lifecycle

    async def start(self) -> None:
        """Start the writer task; returns at once."""
        if self._writer is not None or self._closing:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spendgate-writer")
        self._next_purge = time.monotonic()
        self._writer = asyncio.create_task(self._run(), name="spendgate-collector-writer")

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Refuse new requests, store everything already admitted, stop. Idempotent, safe before start."""
        if self._closing:
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writer)
            return
        self._closing = True
        if self._writer is None or self._queue is None:
            return
        self._queue.put_nowait(None)  # drained after everything admitted before it
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)
        except TimeoutError:
            logger.error("pipeline did not drain within %.0fs; %d requests unanswered", timeout, self._queued_requests)
            self._writer.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # --- intake (event loop thread)

    def submit_nowait(self, payload: bytes, receiver: str) -> asyncio.Future[ExportOutcome]:
        """Admit one protobuf export request; raise ``Overloaded`` when the queue is full."""
        if self._closing or self._queue is None:
            raise ShuttingDown("collector is not accepting spans")
        size = len(payload)
        if self._queued_bytes and self._queued_bytes + size > self._queue_max_bytes:
            self._overloaded += 1
            self._metrics.requests.labels(receiver, "overloaded").inc()
            raise Overloaded(f"ingest queue full ({self._queued_bytes} bytes waiting)")
        future: asyncio.Future[ExportOutcome] = asyncio.get_running_loop().create_future()
        self._queued_bytes += size
        self._queued_requests += 1
        self._metrics.queue_bytes.set(self._queued_bytes)
        self._queue.put_nowait(_Pending(payload, receiver, future))
        return future

    async def export(self, payload: bytes, receiver: str) -> ExportOutcome:
        """Admit a request and wait until its spans are durable (or it failed)."""
        return await self.submit_nowait(payload, receiver)

    async def write_records(self, records: Sequence[SpendRecord], companion: CompanionWrites) -> WriteResult:
        """Store already-built records (the Cursor Admin API poller's) on the writer thread.

        The store has one writer connection, so anything else that writes must take turns with the
        batches on that thread rather than open a transaction of its own.
        """
        if self._closing or self._executor is None:
            raise ShuttingDown("collector is not accepting writes")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._store.write, records, companion)

    def stats(self) -> PipelineStats:
        return PipelineStats(
            running=self._writer is not None and not self._writer.done(),
            queued_requests=self._queued_requests,
            queued_bytes=self._queued_bytes,
            queue_max_bytes=self._queue_max_bytes,
            batches=self._batches,
            overloaded=self._overloaded,
        )

    # --- writer task

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            timeout = None
            if self._retention_days > 0:
                timeout = max(0.0, self._next_purge - time.monotonic())
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                await self._purge_chunk(loop)
                continue
            if first is None:
                break
            batch = [first]
            size = len(first.payload)
            while size < self._batch_max_bytes and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item.payload)
            await self._commit(loop, batch, size)

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], size: int) -> None:
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(self._executor, self._process, [p.payload for p in batch])
        except Exception as exc:
            if not isinstance(exc, CollectorError):
                logger.exception("batch of %d requests failed; exporters will retry", len(batch))
                exc = StoreUnavailable(f"batch failed: {exc}")
            else:
                logger.warning("batch of %d requests not stored: %s", len(batch), exc)
            outcomes = [exc] * len(batch)
        finally:
            self._queued_bytes -= size
            self._queued_requests -= len(batch)
            self._metrics.queue_bytes.set(self._queued_bytes)
        self._batches += 1
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        for pending, outcome in zip(batch, outcomes, strict=True):
            label = "ok" if isinstance(outcome, ExportOutcome) else _outcome_label(outcome)
            self._metrics.requests.labels(pending.receiver, label).inc()
            if pending.future.done():  # the exporter gave up waiting; its spans are stored anyway
                continue
            if isinstance(outcome, ExportOutcome):
                pending.future.set_result(outcome)
            else:
                pending.future.set_exception(outcome)

    async def _purge_chunk(self, loop: asyncio.AbstractEventLoop) -> None:
        cutoff = time.time_ns() - self._retention_days * _NANOS_PER_DAY
        try:
            deleted = await loop.run_in_executor(self._executor, self._store.purge_raw, cutoff, PURGE_CHUNK_ROWS)
        except CollectorError as exc:
            logger.warning("retention purge failed, retrying later: %s", exc)
            deleted = 0
        # A full chunk means more old rows wait: come back right after the next batch, not in an hour.
        self._next_purge = time.monotonic() + (0.0 if deleted >= PURGE_CHUNK_ROWS else PURGE_INTERVAL_S)

    # --- the stages (writer thread)

    def _process(self, payloads: Sequence[bytes]) -> list[ExportOutcome | CollectorError]:
        """Parse, normalise and price each request, then store all their records in one transaction."""
        outcomes: list[ExportOutcome | CollectorError] = []
        records: list[SpendRecord] = []
        spans = non_llm = rejected = 0
        # For the exporters: each stored request with its own records (exporters/manager.py).
        stored: list[tuple[bytes, int, list[SpendRecord]]] | None = [] if self._after_commit else None
        for payload in payloads:
            try:
                request = parse_export_request(payload)
            except InvalidPayload as exc:
                outcomes.append(exc)
                continue
            normalized = self._normalizer.normalize(request)
            self._pricing.price(normalized.records)
            records.extend(normalized.records)
            spans += normalized.spans
            non_llm += normalized.non_llm
            rejected += normalized.rejected
            if stored is not None:
                stored.append((payload, normalized.spans, normalized.records))
            outcomes.append(ExportOutcome(normalized.spans, normalized.rejected, "; ".join(normalized.messages)))
        # Raises StoreUnavailable: nothing kept, all retry. Budgets count exactly the inserted
        # records, in the same transaction (budgets/engine.py).
        budgets = self._budgets
        result = budgets.write(self._store, records) if budgets else self._store.write(records)

        m = self._metrics
        m.spans_received.inc(spans)
        m.non_llm_spans.inc(non_llm)
        m.rejected.inc(rejected)
        m.llm_spans.inc(len(records))
        m.duplicates.inc(result.duplicates)
        priced = 0
        cost_by_team: dict[str, float] = {}
        for r in result.inserted:
            if r.cost_usd is not None:
                priced += 1
                team = r.team or ""
                cost_by_team[team] = cost_by_team.get(team, 0.0) + r.cost_usd
        m.priced.inc(priced)
        m.unpriced.inc(len(result.inserted) - priced)
        for team, cost in cost_by_team.items():
            m.cost_usd.labels(team).inc(cost)
        if stored:
            self._forward(stored, result.inserted)
        return outcomes

    def _forward(self, stored: list[tuple[bytes, int, list[SpendRecord]]], inserted: list[SpendRecord]) -> None:
        """Hand the now-durable requests to the exporters; their failure must not fail the batch."""
        assert self._after_commit is not None
        try:
            self._after_commit(stored, inserted)
        except Exception:
            logger.exception("handing %d stored requests to the exporters failed", len(stored))
