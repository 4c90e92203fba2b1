"""BYOK usage events (calls Cursor made on the team's own API key), kept for reconciliation.

The poller does not store these as spend: with the base URL set, such a call went through the
gateway and is already a spend row (``mapping.py``). What reconciliation needs is how many of them
Cursor saw, per developer and hour, to compare with the gateway's own count. So each BYOK event is
kept here, one row per event, keyed by the same hash of its identity as a spend row's ids: a
re-read event (the poll's lookback, a page overlap, a restart mid-window) is ignored, never counted
twice. Rows are written by the poller in the transaction that stores the window's spend rows and
moves its cursor, so the BYOK events and the cursor can never disagree. The table comes with
migration 8 (``store/migrations.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .mapping import _int, event_ids, event_timestamp_ms, is_byok

TABLE = "cursor_byok_events"
# ON CONFLICT DO NOTHING (not SQLite's OR IGNORE): a re-read event is skipped in any SQL backend.
INSERT = f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
_MS_PER_HOUR = 3_600_000


def row(event: Mapping[str, Any], source: str) -> tuple[Any, ...] | None:
    """The ``INSERT`` parameters for a BYOK event; ``None`` for any other event (or one with no time/user).

    Tokens are counted the way spend rows count them: input includes cache reads and writes.
    """
    ts_ms = event_timestamp_ms(event)
    email = str(event.get("userEmail") or "").strip().lower()
    if ts_ms <= 0 or not email or not is_byok(event):
        return None
    usage = event.get("tokenUsage") or {}
    cache_read = _int(usage.get("cacheReadTokens"))
    cache_write = _int(usage.get("cacheWriteTokens"))
    trace_id, span_id = event_ids(event)
    return (
        trace_id + span_id,
        source,
        ts_ms,
        email,
        str(event.get("model") or ""),
        str(event.get("kind") or ""),
        _int(usage.get("inputTokens")) + cache_read + cache_write,
        _int(usage.get("outputTokens")),
        cache_read,
        cache_write,
    )


def hourly(
    conn: sqlite3.Connection, start_ms: int, end_ms: int, developers: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """BYOK events per (Unix hour, email) with ``start_ms <= ts_ms < end_ms``; ``[]`` before the first poll."""
    if developers is not None and not developers:
        return []
    sql = (
        f"SELECT ts_ms / {_MS_PER_HOUR} AS hour, email AS developer, count(*) AS requests, "
        f"sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens FROM {TABLE} "
        "WHERE ts_ms >= ? AND ts_ms < ?"
    )
    params: list[Any] = [start_ms, end_ms]
    if developers is not None:
        sql += f" AND email IN ({', '.join('?' * len(developers))})"
        params.extend(developers)
    sql += " GROUP BY 1, 2 ORDER BY 2, 1"
    return _rows(conn, sql, params)


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    try:
        cur = conn.execute(sql, tuple(params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the poller never ran against this database
        raise
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
