"""The team-day rollup: spend per UTC day x team x cost centre x model x feature x provider.

It is the daily rollup without its two many-valued dimensions, developer and repo: a month of
500 developers is ~150k daily rows but a few thousand here. Questions that need neither (spend by
day and model for the whole organisation or a team: the dashboard overview's trend and top models,
a chargeback grouped by model or provider over a range of days) are answered from it instead of
sorting the month's daily rows (``SQLiteStore._grouped`` picks the table).

The table is updated inside the spend transaction from the same deltas as the daily rollup and kept
forever, so its sums always equal the daily rollup's. The table is created by migration 2
(``migrations.py``), which back-fills a database from before it from the daily rollup, kept forever
too, so the back-fill was exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import rollup_tables

TABLE = "rollup_daily_team"
KEY: tuple[str, ...] = ("day", "team", "cost_center", "model", "feature", "provider")
DIMENSIONS = frozenset(KEY) - {"day"}
"""The dimensions a question may group or filter by and still be answered here (plus day and month)."""

# Positions of KEY's columns in a daily rollup key (day, developer, team, cost_center, repo, model, feature, provider).
_FROM_DAILY_KEY = (0, 2, 3, 5, 6, 7)


def rows(daily: Mapping[tuple[str, ...], Sequence[int]]) -> list[tuple[Any, ...]]:
    """Upsert parameters (key, then measures) from daily rollup deltas keyed as ``rollup_daily``."""
    acc: dict[tuple[str, ...], list[int]] = {}
    for key, measures in daily.items():
        rollup_tables.add_into(acc, tuple(key[i] for i in _FROM_DAILY_KEY), measures)
    return [(*k, *v) for k, v in acc.items()]
