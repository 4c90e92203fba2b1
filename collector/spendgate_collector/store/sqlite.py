"""The default store: one SQLite file in WAL mode, raw spend rows plus two incremental rollups.

Tables (schema version in ``PRAGMA user_version``, see ``migrations.py``):

- ``spend``: one lean row per LLM span (no content, no price tables), unique on
  ``(trace_id, span_id)``; deleted after the retention period.
- ``rollup_daily``: UTC day x developer x team x cost_center x repo x model x feature x provider,
  summed tokens, cost (integer nano-USD, so sums are exact), requests, errors, unpriced calls.
- ``rollup_monthly``: UTC month x developer x team x cost_center x repo, the same measures. It
  answers chargeback (and any query grouped/filtered only by those dimensions over whole months)
  from a few thousand rows instead of the month's daily rows. Both rollups are kept forever.
- ``rollup_coverage`` (``coverage_rollup.py``) and ``rollup_developer_hours`` (``developer_hours.py``):
  spend by repo source, and gateway calls per developer-hour, for coverage and reconciliation.
- ``rollup_daily_team`` (``team_daily_rollup.py``): the daily rollup without developer and repo, a
  few thousand rows a month; day x model questions (the dashboard overview) are answered from it.

Unknown dimension values are stored as ``''`` (SQL NULLs would make each unattributed row a key of its
own) and come back as ``None``. The tables are created by the numbered migrations of ``migrations.py``,
which the writer's connection applies when it opens (``db.connect``). One writer connection (used only
by the pipeline's writer thread) and one read connection per querying thread; WAL lets them run
concurrently.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailable
from ..records import SpendRecord
from . import coverage_rollup, db, developer_hours, key_usage, rollup_tables, team_daily_rollup
from .base import CompanionWrites, Row, StoreStats, WriteResult
from .query import CHARGEBACK_DIMENSIONS, DIMENSIONS, SpendFilter

logger = logging.getLogger(__name__)

# The unique (trace_id, span_id) index is probed at random for every insert; 64 MiB of page cache
# keeps its hot part in memory for tens of millions of rows while bounding the process's memory.
WRITER_CACHE_KIB = 64 * 1024
READER_CACHE_KIB = 16 * 1024
NANOS_PER_USD = 1_000_000_000

SPEND_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "start_ns",
    "end_ns",
    "developer",
    "team",
    "cost_center",
    "repo",
    "repo_url",
    "branch",
    "repo_source",
    "feature",
    "key_id",
    "provider",
    "model",
    "requested_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_source",
    "status",
    "error_type",
    "ttft_ms",
    "service_name",
    "cost_usd",
    "cost_source",
    "price_version",
)
# Rollup measures, in accumulator order.
ROLLUP_MEASURES: tuple[str, ...] = (
    "requests",
    "errors",
    "unpriced_requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
)
_DAILY_KEY = ("day", *DIMENSIONS)
_MONTHLY_KEY = ("month", *CHARGEBACK_DIMENSIONS)

_INSERT_SPEND = (
    f"INSERT OR IGNORE INTO spend ({', '.join(SPEND_COLUMNS)}) VALUES ({', '.join('?' * len(SPEND_COLUMNS))})"
)


_UPSERT_DAILY = rollup_tables.additive_upsert_sql("rollup_daily", _DAILY_KEY, ROLLUP_MEASURES)
_UPSERT_MONTHLY = rollup_tables.additive_upsert_sql("rollup_monthly", _MONTHLY_KEY, ROLLUP_MEASURES)
_UPSERT_TEAM_DAILY = rollup_tables.additive_upsert_sql(team_daily_rollup.TABLE, team_daily_rollup.KEY, ROLLUP_MEASURES)


_day_strings: dict[int, str] = {}


def day_string(day_number: int) -> str:
    """Days since the epoch → ``YYYY-MM-DD`` (UTC), memoised (a batch spans a day or two)."""
    text = _day_strings.get(day_number)
    if text is None:
        text = datetime.fromtimestamp(day_number * 86_400, UTC).date().isoformat()
        if len(_day_strings) > 4096:
            _day_strings.clear()
        _day_strings[day_number] = text
    return text


class SQLiteStore:
    """``SpendStore`` on one SQLite file. ``readonly=True`` opens an existing file for queries only."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full", readonly: bool = False):
        self.path = Path(path)
        self._readonly = readonly
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._batches = self._inserted = self._duplicates = self._purged = 0
        self._writer: sqlite3.Connection | None = None
        self._key_usage = key_usage.Tracker()
        self._team_daily_seen = False
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no spendgate database at {self.path}")
            return
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        self._writer = db.connect(self.path, schema=db.COLLECTOR, cache_kib=WRITER_CACHE_KIB, synchronous=synchronous)

    # --- writes (writer thread only)

    def write(self, records: Sequence[SpendRecord], companion: CompanionWrites | None = None) -> WriteResult:
        """Insert new records and update both rollups from exactly those, in one transaction.

        ``companion`` (budgets) gets the inserted records and returns more writes for the same transaction.
        """
        conn = self._writer
        if conn is None:
            raise StoreUnavailable("store is read-only or closed")
        try:
            with db.transaction(conn) as cur:
                # Rows inserted in this transaction get rowids above today's largest, so they can be
                # told apart from the ones OR IGNORE skipped (already stored, or repeated in the batch).
                before_rowid = cur.execute("SELECT coalesce(max(rowid), 0) FROM spend").fetchone()[0]
                before_changes = conn.total_changes
                cur.executemany(_INSERT_SPEND, map(_spend_row, records))
                if conn.total_changes - before_changes == len(records):
                    inserted = list(records)
                else:
                    inserted = _select_inserted(cur, records, before_rowid)
                daily, monthly = _aggregate(inserted)
                cur.executemany(_UPSERT_DAILY, [(*k, *v) for k, v in daily.items()])
                cur.executemany(_UPSERT_MONTHLY, [(*k, *v) for k, v in monthly.items()])
                cur.executemany(_UPSERT_TEAM_DAILY, team_daily_rollup.rows(daily))
                usage = self._key_usage.pending(inserted)
                if usage:
                    cur.executemany(key_usage.UPSERT, usage)
                cur.executemany(coverage_rollup.UPSERT, coverage_rollup.rows(inserted, day_string))
                cur.executemany(developer_hours.UPSERT, developer_hours.rows(inserted))
                if companion is not None:
                    for sql, rows in companion(inserted):
                        cur.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc
        self._key_usage.committed(usage)
        self._batches += 1
        self._inserted += len(inserted)
        self._duplicates += len(records) - len(inserted)
        return WriteResult(inserted=inserted, duplicates=len(records) - len(inserted))

    def purge_raw(self, older_than_ns: int, limit: int) -> int:
        """Delete up to ``limit`` spend rows that ended before ``older_than_ns`` (rollups untouched)."""
        conn = self._writer
        if conn is None:
            return 0
        try:
            cur = conn.execute(
                "DELETE FROM spend WHERE rowid IN (SELECT rowid FROM spend WHERE end_ns < ? LIMIT ?)",
                (older_than_ns, limit),
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite purge failed: {exc}") from exc
        self._purged += cur.rowcount
        return cur.rowcount

    # --- reads (any thread)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreUnavailable("store is closed")
            conn = db.connect(self.path, cache_kib=READER_CACHE_KIB, query_only=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _has_team_daily(self) -> bool:
        """Whether the team-day rollup exists: a read-only store may open a file no collector has upgraded."""
        if not self._team_daily_seen:
            try:
                # once there, it stays
                self._team_daily_seen = rollup_tables.table_exists(self._reader(), team_daily_rollup.TABLE)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite query failed: {exc}") from exc
        return self._team_daily_seen

    def _query(self, sql: str, params: Iterable[Any]) -> list[Row]:
        conn = self._reader()
        try:
            cur = conn.execute(sql, tuple(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # a database file from before the first write
            raise StoreUnavailable(f"SQLite query failed: {exc}") from exc

    def _grouped(
        self,
        flt: SpendFilter,
        group_by: Sequence[str],
        *,
        order_by: str,
        limit: int | None = None,
        force_daily: bool = False,
    ) -> list[Row]:
        dims_used = set(group_by) | {name for name, _ in flt.equals} | {name for name, _ in flt.within}
        monthly = (
            not force_daily
            and "day" not in dims_used
            and dims_used <= {"month", *CHARGEBACK_DIMENSIONS}
            and flt.covers_whole_months()
        )
        table = "rollup_monthly" if monthly else "rollup_daily"
        if not monthly and dims_used <= {"day", "month", *team_daily_rollup.DIMENSIONS} and self._has_team_daily():
            table = team_daily_rollup.TABLE  # same sums, a few thousand rows a month instead of ~150k
        where: list[str] = []
        params: list[Any] = []
        if monthly:
            if flt.start is not None:
                where.append("month >= ?")
                params.append(flt.start.strftime("%Y-%m"))
            if flt.end is not None:
                where.append("month <= ?")
                params.append(flt.end.strftime("%Y-%m"))
        else:
            _day_range(flt, where, params)
        _equals(flt, where, params)
        exprs = ["substr(day, 1, 7) AS month" if (g == "month" and not monthly) else g for g in group_by]
        sums = ", ".join(f"SUM({m}) AS {m}" for m in ROLLUP_MEASURES)
        sql = f"SELECT {', '.join([*exprs, sums])} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if group_by:
            sql += " GROUP BY " + ", ".join(group_by)
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._query(sql, params)
        if not group_by and rows and rows[0]["requests"] is None:
            rows = []  # SUM over no rows
        return [_present(row, group_by) for row in rows]

    def spend(self, flt: SpendFilter, group_by: Sequence[str]) -> list[Row]:
        order = ", ".join(["cost_nanos DESC", "requests DESC", *group_by])
        return self._grouped(flt, group_by, order_by=order)

    def top(self, flt: SpendFilter, dimension: str, n: int) -> list[Row]:
        return self._grouped(flt, (dimension,), order_by=f"cost_nanos DESC, requests DESC, {dimension}", limit=n)

    def timeseries(self, flt: SpendFilter, group_by: Sequence[str] = ()) -> list[Row]:
        columns = ("day", *[g for g in group_by if g != "day"])
        return self._grouped(flt, columns, order_by=", ".join(columns), force_daily=True)

    def chargeback(self, flt: SpendFilter) -> list[Row]:
        return self._grouped(flt, CHARGEBACK_DIMENSIONS, order_by=", ".join(CHARGEBACK_DIMENSIONS))

    def unpriced(self, flt: SpendFilter) -> list[Row]:
        where = ["unpriced_requests > 0"]
        params: list[Any] = []
        _day_range(flt, where, params)
        _equals(flt, where, params)
        sql = (
            "SELECT model, provider, SUM(unpriced_requests) AS requests, "
            "SUM(unpriced_input_tokens) AS input_tokens, SUM(unpriced_output_tokens) AS output_tokens, "
            "MIN(day) AS first_day, MAX(day) AS last_day FROM rollup_daily WHERE "
            + " AND ".join(where)
            + " GROUP BY model, provider ORDER BY requests DESC, model, provider"
        )
        rows = self._query(sql, params)
        for row in rows:
            row["model"] = row["model"] or None
            row["provider"] = row["provider"] or None
        return rows

    def key_last_used(self, key_ids: Sequence[str] | None = None) -> dict[str, int]:
        """``{key_id: start_ns of its latest stored call}`` for ``key_ids`` (default: every key seen)."""
        try:
            return key_usage.read(self._reader(), key_ids)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite query failed: {exc}") from exc

    def coverage(self, flt: SpendFilter, group_by: Sequence[str] = ()) -> list[Row]:
        """Coverage rollup sums by ``group_by`` (developer, team, cost_center) x repo source x attributed.

        Measures: requests, unpriced_requests, input_tokens, output_tokens, cost_nanos (integers);
        ``''`` key values are returned as they are stored.
        """
        where: list[str] = []
        params: list[Any] = []
        _day_range(flt, where, params)
        _equals(flt, where, params)
        sql = coverage_rollup.select_sql(where, tuple(group_by))
        with _newer_rollup("coverage rollup"):
            cur = self._reader().execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def developer_hours(self, start_hour: int, end_hour: int, developers: Sequence[str] | None = None) -> list[Row]:
        """Gateway calls per (Unix hour, lowercased developer) in ``[start_hour, end_hour)``."""
        with _newer_rollup("developer-hours rollup"):
            return developer_hours.read(self._reader(), start_hour, end_hour, developers)

    def raw_rows(self, where: str = "1", params: Sequence[Any] = ()) -> list[Row]:
        """Raw spend rows (for tests and debugging), ordered by end time then ids."""
        return self._query(f"SELECT * FROM spend WHERE {where} ORDER BY end_ns, trace_id, span_id", params)

    def rollup_rows(self, table: str = "rollup_daily") -> list[Row]:
        """Every row of a rollup table (for tests and debugging), in key order."""
        known = (
            "rollup_daily",
            "rollup_monthly",
            team_daily_rollup.TABLE,
            coverage_rollup.TABLE,
            developer_hours.TABLE,
        )
        if table not in known:
            raise ValueError(f"unknown rollup table {table!r}")
        return self._query(f"SELECT * FROM {table}", ())

    def stats(self) -> StoreStats:
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return StoreStats(
            backend=self.backend,
            location=str(self.path),
            size_bytes=size,
            batches_written=self._batches,
            rows_inserted=self._inserted,
            duplicates=self._duplicates,
            rows_purged=self._purged,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except sqlite3.Error:  # closing a reader another thread is still using; it dies with the process
                logger.debug("reader connection not closed cleanly", exc_info=True)
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                # Fold the WAL back into the main file so a copied .db is complete on its own.
                writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                logger.debug("checkpoint at close failed", exc_info=True)
            writer.close()


_spend_row = operator.attrgetter(*SPEND_COLUMNS)


@contextlib.contextmanager
def _newer_rollup(name: str) -> Iterator[None]:
    """Read a rollup a read-only store may not have yet: a missing table says how to add it."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            hint = f"this database predates the {name}; start the collector on it once to add it"
            raise StoreUnavailable(hint) from None
        raise StoreUnavailable(f"SQLite query failed: {exc}") from exc


def _select_inserted(cur: sqlite3.Cursor, records: Sequence[SpendRecord], before_rowid: int) -> list[SpendRecord]:
    """The records whose rows this transaction inserted (first occurrence of each id), in input order.

    Only these may reach the rollups, or a retried export would be counted twice.
    """
    fresh = set(cur.execute("SELECT trace_id, span_id FROM spend WHERE rowid > ?", (before_rowid,)).fetchall())
    inserted = []
    for r in records:
        key = (r.trace_id, r.span_id)
        if key in fresh:
            fresh.discard(key)
            inserted.append(r)
    return inserted


def _aggregate(
    records: Sequence[SpendRecord],
) -> tuple[dict[tuple[str, ...], list[int]], dict[tuple[str, ...], list[int]]]:
    """Sum records into daily and monthly rollup deltas (accumulators in ``ROLLUP_MEASURES`` order)."""
    daily: dict[tuple[str, ...], list[int]] = {}
    for r in records:
        key: tuple[str, ...] = (
            day_string(r.end_ns // 86_400_000_000_000),
            r.developer or "",
            r.team or "",
            r.cost_center or "",
            r.repo or "",
            r.model or "",
            r.feature or "",
            r.provider or "",
        )
        acc = daily.get(key)
        if acc is None:
            acc = daily[key] = [0] * len(ROLLUP_MEASURES)
        acc[0] += 1
        if r.status == "error":
            acc[1] += 1
        acc[3] += r.input_tokens
        acc[4] += r.output_tokens
        acc[5] += r.cache_read_tokens
        acc[6] += r.cache_write_tokens
        acc[7] += r.reasoning_tokens
        if r.cost_usd is None:
            acc[2] += 1
            acc[9] += r.input_tokens
            acc[10] += r.output_tokens
        else:
            acc[8] += round(r.cost_usd * NANOS_PER_USD)
    monthly: dict[tuple[str, ...], list[int]] = {}
    for key, acc in daily.items():
        rollup_tables.add_into(monthly, (key[0][:7], key[1], key[2], key[3], key[4]), acc)
    return daily, monthly


def _present(row: dict[str, Any], group_by: Sequence[str]) -> Row:
    """Rollup sums → API row: group columns (``''`` → ``None``), then measures with ``cost_usd``.

    ``cost_usd`` covers the priced calls; it is ``None`` when every call of the group is unpriced.
    """
    out: Row = {g: (row[g] or None) for g in group_by}
    for m in ("requests", "errors", "unpriced_requests"):
        out[m] = row[m] or 0
    for m in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        out[m] = row[m] or 0
    # A group made only of unpriced calls has no known cost: null, never a misleading 0.
    if out["requests"] and out["unpriced_requests"] == out["requests"]:
        out["cost_usd"] = None
    else:
        out["cost_usd"] = round((row["cost_nanos"] or 0) / NANOS_PER_USD, 9)
    return out


def _day_range(flt: SpendFilter, where: list[str], params: list[Any]) -> None:
    """Add the filter's day range to a query on ``rollup_daily``."""
    if flt.start is not None:
        where.append("day >= ?")
        params.append(flt.start.isoformat())
    if flt.end is not None:
        where.append("day <= ?")
        params.append(flt.end.isoformat())


def _equals(flt: SpendFilter, where: list[str], params: list[Any]) -> None:
    """Add the filter's equality and ``IN`` conditions (names come from ``query.DIMENSIONS`` only)."""
    for name, value in flt.equals:
        where.append(f"{name} = ?")
        params.append(value)
    for name, values in flt.within:
        if not values:
            where.append("0")  # one of no values: nothing matches
            continue
        where.append(f"{name} IN ({', '.join('?' * len(values))})")
        params.extend(values)
