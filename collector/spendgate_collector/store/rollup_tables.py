"""The SQL and bookkeeping every rollup table shares: its DDL, an additive upsert, a one-time back-fill.

A rollup is keyed rows of integer measures, updated inside the spend transaction by adding each
batch's deltas. The daily, monthly, team-day, coverage and developer-hours rollups differ in key,
measures and back-fill source, not in these shapes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


def ddl(table: str, key: Mapping[str, str], measures: Sequence[str], *, if_not_exists: bool = False) -> str:
    """``CREATE TABLE``: ``key`` columns (name → SQL type), integer measures defaulting to 0, keyed WITHOUT ROWID."""
    key_cols = ", ".join(f"{k} {sql_type} NOT NULL" for k, sql_type in key.items())
    cols = ", ".join(f"{m} INTEGER NOT NULL DEFAULT 0" for m in measures)
    create = "CREATE TABLE IF NOT EXISTS" if if_not_exists else "CREATE TABLE"
    return f"{create} {table} ({key_cols}, {cols}, PRIMARY KEY ({', '.join(key)})) WITHOUT ROWID"


def text_key(key: Sequence[str]) -> dict[str, str]:
    """``key`` as ``ddl`` columns, every one TEXT (the usual case: unknown values are stored as ``''``)."""
    return dict.fromkeys(key, "TEXT")


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


def create_once(conn: sqlite3.Connection, table: str, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
    """When ``table`` is missing, run ``statements`` (its DDL, then its back-fill) in one transaction.

    Only a new table is back-filled: an existing one is already up to date, since every batch adds
    to it. One transaction, so a crash mid-way leaves no half-filled table that would never be
    filled again.
    """
    if table_exists(conn, table):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def add_into(acc: MutableMapping[K, list[int]], key: K, values: Sequence[int]) -> None:
    """Add ``values`` to ``acc[key]`` element-wise (a copy of them when the key is new)."""
    a = acc.get(key)
    if a is None:
        acc[key] = list(values)
    else:
        for i, value in enumerate(values):
            a[i] += value
