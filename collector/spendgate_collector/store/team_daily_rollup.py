"""The team-day rollup: spend per UTC day x team x cost centre x model x feature x provider.

It is the daily rollup without its two many-valued dimensions, developer and repo: a month of
500 developers is ~150k daily rows but a few thousand here. Questions that need neither (spend by
day and model for the whole organisation or a team: the dashboard overview's trend and top models,
a chargeback grouped by model or provider over a range of days) are answered from it instead of
sorting the month's daily rows (``SQLiteStore._grouped`` picks the table).

The table is updated inside the spend transaction from the same deltas as the daily rollup and kept
forever, so its sums always equal the daily rollup's. ``create`` runs with the store's schema; the
first time (a new database, or one from before this table existed) it back-fills from the daily
rollup, which is kept forever too, so the back-fill is exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from . import rollup_tables

TABLE = "rollup_daily_team"
KEY: tuple[str, ...] = ("day", "team", "cost_center", "model", "feature", "provider")
DIMENSIONS = frozenset(KEY) - {"day"}
"""The dimensions a question may group or filter by and still be answered here (plus day and month)."""

# Positions of KEY's columns in a daily rollup key (day, developer, team, cost_center, repo, model, feature, provider).
_FROM_DAILY_KEY = (0, 2, 3, 5, 6, 7)


def backfill_sql(measures: Sequence[str]) -> str:
    """Fill the (empty) table from ``rollup_daily``: the same sums, regrouped."""
    sums = ", ".join(f"SUM({m})" for m in measures)
    keys = ", ".join(KEY)
    columns = ", ".join((*KEY, *measures))
    return f"INSERT INTO {TABLE} ({columns}) SELECT {keys}, {sums} FROM rollup_daily GROUP BY {keys}"


def create(conn: sqlite3.Connection, measures: Sequence[str]) -> None:
    """Create the table if missing and, when it is new, back-fill it from the daily rollup; one transaction."""
    ddl = rollup_tables.ddl(TABLE, rollup_tables.text_key(KEY), measures)
    rollup_tables.create_once(conn, TABLE, [(ddl, ()), (backfill_sql(measures), ())])


def rows(daily: Mapping[tuple[str, ...], Sequence[int]]) -> list[tuple[Any, ...]]:
    """Upsert parameters (key, then measures) from daily rollup deltas keyed as ``rollup_daily``."""
    acc: dict[tuple[str, ...], list[int]] = {}
    for key, measures in daily.items():
        rollup_tables.add_into(acc, tuple(key[i] for i in _FROM_DAILY_KEY), measures)
    return [(*k, *v) for k, v in acc.items()]
