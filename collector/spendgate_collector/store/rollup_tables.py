"""The SQL and bookkeeping every rollup table shares: an additive upsert and summing deltas in memory.

A rollup is keyed rows of integer measures, updated inside the spend transaction by adding each
batch's deltas. The daily, monthly, team-day, coverage and developer-hours rollups differ in key
and measures, not in these shapes. Their tables (and one-time back-fills) are migrations
(``migrations.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable, MutableMapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def additive_upsert_sql(table: str, key: Sequence[str], measures: Sequence[str]) -> str:
    """Insert a row of deltas (key, then measures), or add them to the row already there."""
    columns = (*key, *measures)
    updates = ", ".join(f"{m} = {m} + excluded.{m}" for m in measures)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    """Whether ``table`` is in the database's schema."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return found.fetchone() is not None


def add_into(acc: MutableMapping[K, list[int]], key: K, values: Sequence[int]) -> None:
    """Add ``values`` to ``acc[key]`` element-wise (a copy of them when the key is new)."""
    a = acc.get(key)
    if a is None:
        acc[key] = list(values)
    else:
        for i, value in enumerate(values):
            a[i] += value
