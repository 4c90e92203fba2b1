"""When each virtual key was last used: a one-row-per-key table kept up to date inside the spend transaction.

``key_last_used(key_id, last_start_ns)`` answers "last used" for the keys list in one small read,
whatever the size of ``spend``. The alternative, ``max(start_ns)`` over the raw rows, needs an extra
index on a table that takes every span (slowing ingest) and forgets a key once retention purges its
rows; this table is never purged, and ``Tracker`` keeps its cost off ingest: last use is kept to the
minute, so a key is written at most once a minute (a busy key's value is at most a minute behind),
not once per batch.

The table is created by migration 3 (``migrations.py``), which back-fills a database from before it
from the spend rows already stored, so upgrading an existing database lost no history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..records import SpendRecord

TABLE = "key_last_used"
RESOLUTION_NS = 60 * 1_000_000_000

# max(): batches may arrive out of order (a proxy retrying an old export), and last-used must not go back.
UPSERT = (
    f"INSERT INTO {TABLE} (key_id, last_start_ns) VALUES (?, ?) "
    "ON CONFLICT (key_id) DO UPDATE SET last_start_ns = max(last_start_ns, excluded.last_start_ns)"
)


def rows(records: Iterable[SpendRecord]) -> list[tuple[str, int]]:
    """``(key_id, latest start_ns)`` per key among ``records``, for ``UPSERT`` in the same transaction."""
    latest: dict[str, int] = {}
    for r in records:
        key_id = r.key_id
        if key_id and latest.get(key_id, -1) < r.start_ns:
            latest[key_id] = r.start_ns
    return list(latest.items())


class Tracker:
    """What the table holds, as far as this writer knows, so a batch upserts only keys whose last use
    moved to a later minute. Only the store's writer thread uses it; ``committed`` runs after COMMIT,
    so a rolled-back batch is written again by the next one."""

    def __init__(self) -> None:
        self._known: dict[str, int] = {}

    def pending(self, records: Iterable[SpendRecord]) -> list[tuple[str, int]]:
        """``rows(records)`` less the keys already stored with a use in the same or a later minute."""
        known = self._known
        return [(k, t) for k, t in rows(records) if t // RESOLUTION_NS > known.get(k, -RESOLUTION_NS) // RESOLUTION_NS]

    def committed(self, written: Iterable[tuple[str, int]]) -> None:
        for key_id, start_ns in written:
            if start_ns > self._known.get(key_id, -1):
                self._known[key_id] = start_ns


def read(conn: sqlite3.Connection, key_ids: Sequence[str] | None = None) -> dict[str, int]:
    """``{key_id: last start_ns}``, for ``key_ids`` or every key ever seen; unknown keys are absent."""
    try:
        if key_ids is None:
            cur = conn.execute(f"SELECT key_id, last_start_ns FROM {TABLE}")
            return dict(cur.fetchall())
        out: dict[str, int] = {}
        ids = list(dict.fromkeys(key_ids))
        # Chunks stay under SQLite's host-parameter limit (999 on older builds).
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            params: list[Any] = list(chunk)
            cur = conn.execute(
                f"SELECT key_id, last_start_ns FROM {TABLE} WHERE key_id IN ({', '.join('?' * len(chunk))})", params
            )
            out.update(cur.fetchall())
        return out
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}  # a read-only view of a database no writer has upgraded yet
        raise
