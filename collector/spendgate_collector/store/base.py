"""The storage interface the pipeline and the query API need, so PostgreSQL can replace SQLite later.

Contract: ``write`` stores a batch in one transaction and returns only once it is durable; it is
idempotent on ``(trace_id, span_id)`` (a span already stored is counted as a duplicate and changes
nothing) and updates the rollups from exactly the rows it inserted. ``write`` and ``purge_raw`` are
called from one writer thread; the query methods may be called from any thread, concurrently.
Query results are lists of plain dicts: the group columns, then ``query.MEASURES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..records import SpendRecord
from .query import SpendFilter

Row = dict[str, Any]

CompanionWrites = Callable[[list[SpendRecord]], Sequence[tuple[str, Sequence[Sequence[Any]]]]]
"""Given the records a ``write`` really inserted, more ``(sql, rows)`` for the same transaction.

Budgets use it to add those records to their running totals atomically with the spend rows
(``budgets/storage.py``); the SQL is portable (``INSERT ... ON CONFLICT``), DDL stays in ``store/``.
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one ``write`` did."""

    inserted: list[SpendRecord]
    """The records newly stored, in input order (duplicates excluded)."""
    duplicates: int
    """Records already stored (or repeated within the batch), ignored."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A cheap snapshot for ``/healthz``."""

    backend: str
    location: str
    size_bytes: int
    batches_written: int
    rows_inserted: int
    duplicates: int
    rows_purged: int


class SpendStore(Protocol):
    """Lean spend rows plus incrementally maintained rollups."""

    def write(self, records: Sequence[SpendRecord], companion: CompanionWrites | None = None) -> WriteResult:
        """Insert new records and fold them into the rollups (and ``companion``'s writes), in one transaction."""
        ...

    def purge_raw(self, older_than_ns: int, limit: int) -> int:
        """Delete up to ``limit`` raw rows that ended before ``older_than_ns``; rollups are kept."""
        ...

    def spend(self, flt: SpendFilter, group_by: Sequence[str]) -> list[Row]:
        """Sums grouped by ``group_by`` (``query.GROUPABLE`` names), costliest first."""
        ...

    def top(self, flt: SpendFilter, dimension: str, n: int) -> list[Row]:
        """The ``n`` costliest values of ``dimension``."""
        ...

    def timeseries(self, flt: SpendFilter, group_by: Sequence[str] = ()) -> list[Row]:
        """Sums by day (and ``group_by``), oldest first."""
        ...

    def chargeback(self, flt: SpendFilter) -> list[Row]:
        """One row per developer x team x cost centre x repo, ordered by those columns."""
        ...

    def unpriced(self, flt: SpendFilter) -> list[Row]:
        """Calls no price was found for, by model and provider."""
        ...

    def coverage(self, flt: SpendFilter, group_by: Sequence[str] = ()) -> list[Row]:
        """Sums by ``group_by`` x ``repo_source`` x ``attributed`` (has a repo: 1/0) (``attribution/coverage.py``)."""
        ...

    def developer_hours(self, start_hour: int, end_hour: int, developers: Sequence[str] | None = None) -> list[Row]:
        """Gateway calls per Unix hour (of the call's start) and lowercased developer (reconciliation)."""
        ...

    def stats(self) -> StoreStats:
        """Counters since open, and the store's size."""
        ...

    def close(self) -> None:
        """Close every connection; idempotent."""
        ...
