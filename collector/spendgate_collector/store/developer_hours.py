"""Gateway calls per UTC hour x developer: what reconciliation compares with Cursor's own usage data.

Reconciliation (``attribution/reconcile.py``) asks, per developer and hour, how many calls the gateway saw. The
raw rows could answer it, but a month of them is millions of rows to scan and retention deletes
them; this table is one row per active developer-hour, updated inside the spend transaction from
exactly the rows inserted, and kept forever.

The hour is the call's **start** (Unix hours, UTC): Cursor stamps a usage event when the request
is made, so the start is what lines up with it. Rows read from the Cursor Admin API
(``repo_source = cursor-admin-api``) are not gateway traffic and are left out.

The table is created by migration 5 (``migrations.py``), which back-fills a database from before it
from the raw rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from spendgate_semconv.attributes import RepoSource

from ..records import SpendRecord
from . import rollup_tables

TABLE = "rollup_developer_hours"
MEASURES: tuple[str, ...] = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens")
NANOS_PER_HOUR = 3600 * 1_000_000_000

KEY: tuple[str, ...] = ("hour", "developer")

UPSERT = rollup_tables.additive_upsert_sql(TABLE, KEY, MEASURES)


def rows(records: Iterable[SpendRecord]) -> list[tuple[Any, ...]]:
    """``UPSERT`` parameters for the gateway calls among ``records``."""
    acc: dict[tuple[int, str], list[int]] = {}
    for r in records:
        if r.repo_source == RepoSource.CURSOR_ADMIN_API:
            continue
        key = (r.start_ns // NANOS_PER_HOUR, r.developer or "")
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0, 0, 0, 0, 0]
        a[0] += 1
        if r.status == "error":
            a[1] += 1
        a[2] += r.input_tokens
        a[3] += r.output_tokens
        a[4] += r.cache_read_tokens
    return [(*k, *v) for k, v in acc.items()]


def read(
    conn: sqlite3.Connection, start_hour: int, end_hour: int, developers: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Rows with ``start_hour <= hour < end_hour``, developer lowercased (emails compare case-blind).

    ``developers`` (lowercase) narrows to those people; ``None`` means everyone, ``()`` no one.
    """
    if developers is not None and not developers:
        return []
    sql = (
        f"SELECT hour, lower(developer) AS developer, {', '.join(f'SUM({m}) AS {m}' for m in MEASURES)} "
        f"FROM {TABLE} WHERE hour >= ? AND hour < ? AND developer != ''"
    )
    params: list[Any] = [start_hour, end_hour]
    if developers is not None:
        sql += f" AND lower(developer) IN ({', '.join('?' * len(developers))})"
        params.extend(developers)
    sql += " GROUP BY 1, 2 ORDER BY 2, 1"
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
