"""The exporters' persistent queue: one SQLite file beside the store, one FIFO of requests per exporter.

Each row is one ready-to-send ``ExportTraceServiceRequest`` (already enriched and filtered for its
exporter) with its span count. Rows are written once the pipeline has committed their spans to the
store, deleted once the backend has accepted them (or refused them for good), and survive a restart:
a collector that starts with rows queued resumes sending them, oldest first.

Each exporter's queue is bounded in bytes. ``trim`` enforces the bound by deleting the oldest rows
(never the one being sent) and reports what it dropped, so the caller can count and log it.

WAL with ``synchronous=NORMAL``: a queued row survives a collector crash; a power cut may lose the
last few rows, which is acceptable because the spend itself is in the store (``synchronous=FULL`` by
default) and forwarding is a copy. One connection, guarded by a lock: statements are short and are
run by the enqueuer thread and each exporter's sender thread. The file is opened like the
collector's database (``store.db.connect``) with a schema of its own (``migrations.EXPORT_QUEUE``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..store import db


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """The oldest queued requests of an exporter, merged into one request."""

    seqs: tuple[int, ...]
    spans: int
    payload: bytes
    """The rows' bytes concatenated: itself one valid ``ExportTraceServiceRequest``."""


@dataclass(frozen=True, slots=True)
class QueueTotals:
    """What one exporter has waiting."""

    items: int
    spans: int
    bytes: int
    oldest_ns: int | None
    """When the oldest waiting row was queued (Unix ns); ``None`` when empty."""


@dataclass(slots=True)
class _Totals:
    items: int = 0
    spans: int = 0
    bytes: int = 0
    in_flight: frozenset[int] = frozenset()


class ExportQueue:
    """Per-exporter FIFOs of request bytes in one SQLite file. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = db.connect(path, schema=db.EXPORT_QUEUE, synchronous="normal")
        self._totals: dict[str, _Totals] = {}
        for exporter, items, spans, size in self._conn.execute(
            "SELECT exporter, count(*), sum(spans), sum(bytes) FROM export_queue GROUP BY exporter"
        ):
            self._totals[exporter] = _Totals(items, spans, size)

    def exporters_with_rows(self) -> list[str]:
        """Names of every exporter with rows queued (configured or not)."""
        with self._lock:
            return sorted(name for name, t in self._totals.items() if t.items)

    def put(self, rows: Iterable[tuple[str, int, bytes]]) -> None:
        """Append ``(exporter, spans, payload)`` rows in one transaction."""
        now = time.time_ns()
        batch = [(exporter, spans, len(payload), now, payload) for exporter, spans, payload in rows]
        if not batch:
            return
        with self._lock:
            with db.transaction(self._require()) as cur:
                cur.executemany(
                    "INSERT INTO export_queue (exporter, spans, bytes, enqueued_ns, payload) VALUES (?, ?, ?, ?, ?)",
                    batch,
                )
            for exporter, spans, size, _, _ in batch:
                totals = self._totals.setdefault(exporter, _Totals())
                totals.items += 1
                totals.spans += spans
                totals.bytes += size

    def trim(self, exporter: str, max_bytes: int) -> tuple[int, int]:
        """Delete the oldest rows (not the one in flight) until ``exporter`` holds ≤ ``max_bytes``.

        Returns ``(rows, spans)`` deleted.
        """
        with self._lock:
            totals = self._totals.get(exporter)
            if totals is None or totals.bytes <= max_bytes:
                return 0, 0
            conn = self._require()
            excess = totals.bytes - max_bytes
            victims: list[tuple[int, int, int]] = []
            freed = 0
            for seq, spans, size in conn.execute(
                "SELECT seq, spans, bytes FROM export_queue WHERE exporter = ? ORDER BY seq", (exporter,)
            ):
                if seq in totals.in_flight:
                    continue
                victims.append((seq, spans, size))
                freed += size
                if freed >= excess:
                    break
            conn.executemany("DELETE FROM export_queue WHERE seq = ?", [(seq,) for seq, _, _ in victims])
            dropped_spans = sum(spans for _, spans, _ in victims)
            totals.items -= len(victims)
            totals.spans -= dropped_spans
            totals.bytes -= freed
            return len(victims), dropped_spans

    def peek(self, exporter: str, max_bytes: int) -> QueuedItem | None:
        """The oldest rows of ``exporter`` (as many as fit in ``max_bytes``, at least one), marked in
        flight: ``trim`` leaves them alone until ``remove`` or ``release``."""
        with self._lock:
            totals = self._totals.get(exporter)
            if totals is None or not totals.items:
                return None
            seqs: list[int] = []
            payloads: list[bytes] = []
            size = spans = 0
            for seq, count, length, payload in self._require().execute(
                "SELECT seq, spans, bytes, payload FROM export_queue WHERE exporter = ? ORDER BY seq", (exporter,)
            ):
                if seqs and size + length > max_bytes:
                    break
                seqs.append(seq)
                payloads.append(payload)
                size += length
                spans += count
            if not seqs:
                return None
            totals.in_flight = frozenset(seqs)
            return QueuedItem(tuple(seqs), spans, b"".join(payloads))

    def remove(self, exporter: str, item: QueuedItem) -> None:
        """Delete the rows ``peek`` returned (sent, or refused for good)."""
        marks = ",".join("?" * len(item.seqs))
        with self._lock:
            totals = self._totals[exporter]
            totals.in_flight = frozenset()
            with db.transaction(self._require()) as cur:
                rows = cur.execute(
                    f"SELECT count(*), sum(spans), sum(bytes) FROM export_queue WHERE seq IN ({marks})", item.seqs
                ).fetchone()
                cur.execute(f"DELETE FROM export_queue WHERE seq IN ({marks})", item.seqs)
            totals.items -= rows[0]
            totals.spans -= rows[1] or 0
            totals.bytes -= rows[2] or 0

    def release(self, exporter: str) -> None:
        """Forget the in-flight mark without deleting (the send will be retried later)."""
        with self._lock:
            totals = self._totals.get(exporter)
            if totals is not None:
                totals.in_flight = frozenset()

    def totals(self, exporter: str) -> QueueTotals:
        with self._lock:
            totals = self._totals.get(exporter) or _Totals()
            oldest = None
            if totals.items and self._conn is not None:
                row = self._conn.execute(
                    "SELECT enqueued_ns FROM export_queue WHERE exporter = ? ORDER BY seq LIMIT 1", (exporter,)
                ).fetchone()
                oldest = row[0] if row else None
            return QueueTotals(totals.items, totals.spans, totals.bytes, oldest)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("export queue is closed")
        return self._conn
