"""Cursor's per-user daily usage (``/teams/daily-usage-data``), kept as the cross-check for reconciliation.

Each row is one user's day as Cursor last reported it: ``apiKeyReqs`` (requests on the team's own
API key, the number reconciliation checks the hourly BYOK events against) and the other request
counts. A day keeps changing until it is over, so a re-read **replaces** the row (upsert by
``(source, day, email)``): writes are idempotent, and resuming after a restart just reads the
days again. ``day`` is the UTC date of the row's ``date`` (Unix ms of the day's start). The table
comes with migration 8 (``store/migrations.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .mapping import _int

TABLE = "cursor_daily_usage"
COUNTS: tuple[tuple[str, str], ...] = (
    ("api_key_reqs", "apiKeyReqs"),
    ("usage_based_reqs", "usageBasedReqs"),
    ("subscription_included_reqs", "subscriptionIncludedReqs"),
    ("composer_requests", "composerRequests"),
    ("chat_requests", "chatRequests"),
    ("agent_requests", "agentRequests"),
    ("cmdk_usages", "cmdkUsages"),
    ("total_tabs_accepted", "totalTabsAccepted"),
)
"""Stored column → the API's field."""

_COLUMNS = ("source", "day", "email", *(c for c, _ in COUNTS), "most_used_model", "fetched_ms")
UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (source, day, email) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[3:])
)
MS_PER_DAY = 86_400_000


def day_of(ms: int) -> str:
    """Unix ms → its UTC date, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def rows(data: Iterable[Mapping[str, Any]], source: str, fetched_ms: int) -> list[tuple[Any, ...]]:
    """``UPSERT`` parameters for the API's ``data[]`` items (items without a date or email are skipped)."""
    out = []
    for item in data:
        date_ms = _int(item.get("date"))
        email = str(item.get("email") or "").strip().lower()
        if date_ms <= 0 or not email:
            continue
        counts = [_int(item.get(field)) for _, field in COUNTS]
        out.append((source, day_of(date_ms), email, *counts, item.get("mostUsedModel"), fetched_ms))
    return out


def read(
    conn: sqlite3.Connection, first_day: str, last_day: str, developers: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """``api_key_reqs`` per (day, email) for ``first_day <= day <= last_day``, summed over sources."""
    if developers is not None and not developers:
        return []
    sql = (
        f"SELECT day, email AS developer, sum(api_key_reqs) AS api_key_reqs, max(fetched_ms) AS fetched_ms "
        f"FROM {TABLE} WHERE day >= ? AND day <= ?"
    )
    params: list[Any] = [first_day, last_day]
    if developers is not None:
        sql += f" AND email IN ({', '.join('?' * len(developers))})"
        params.extend(developers)
    sql += " GROUP BY 1, 2 ORDER BY 2, 1"
    try:
        cur = conn.execute(sql, params)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
