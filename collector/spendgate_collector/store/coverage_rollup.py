"""The coverage rollup: spend per UTC day x developer x team x cost centre x repo source x has-a-repo.

It answers "what share of spend has a repository, and which attribution source gave it"
(``attribution/coverage.py``, ``GET /api/coverage``) from a few rows per developer-day. The daily rollup cannot:
it is keyed by the repo itself, not by how the repo was found. The table is updated inside the spend
transaction from exactly the rows inserted, like the other rollups, and kept forever.

``attributed`` is part of the key because the source alone does not say it: a span from another
instrumentation can carry a repo with no ``spendgate.repo.source``, and a source can be recorded
for a span whose repo ended up empty.

The table is created by migration 4 (``migrations.py``). A database from before it is back-filled
then from the raw spend rows still kept; spend whose raw rows retention had already deleted is
back-filled from the daily rollup (which knows whether each row had a repo, not how), under the
source ``untracked``, so coverage totals always equal the chargeback's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..records import SpendRecord
from . import rollup_tables

TABLE = "rollup_coverage"
KEY: tuple[str, ...] = ("day", "developer", "team", "cost_center", "repo_source", "attributed")
MEASURES: tuple[str, ...] = ("requests", "unpriced_requests", "input_tokens", "output_tokens", "cost_nanos")
UNTRACKED = "untracked"
"""Source of back-filled spend whose raw rows were gone: whether it had a repo is known, not how."""

NANOS_PER_USD = 1_000_000_000
_NANOS_PER_DAY = 86_400 * 1_000_000_000

UPSERT = rollup_tables.additive_upsert_sql(TABLE, KEY, MEASURES)


def rows(records: Iterable[SpendRecord], day_string: Callable[[int], str]) -> list[tuple[Any, ...]]:
    """Rollup deltas for ``records`` (``UPSERT`` parameters); ``day_string`` maps a day number to text."""
    acc: dict[tuple[Any, ...], list[int]] = {}
    for r in records:
        key = (
            day_string(r.end_ns // _NANOS_PER_DAY),
            r.developer or "",
            r.team or "",
            r.cost_center or "",
            r.repo_source or "",
            1 if r.repo else 0,
        )
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0, 0, 0, 0, 0]
        a[0] += 1
        a[2] += r.input_tokens
        a[3] += r.output_tokens
        if r.cost_usd is None:
            a[1] += 1
        else:
            a[4] += round(r.cost_usd * NANOS_PER_USD)
    return [(*k, *v) for k, v in acc.items()]


def select_sql(where: list[str], group_by: tuple[str, ...]) -> str:
    """Sums by ``group_by`` + source + attributed, for the conditions ``where`` (built by the store)."""
    cols = [*group_by, "repo_source", "attributed"]
    sums = ", ".join(f"SUM({m}) AS {m}" for m in MEASURES)
    sql = f"SELECT {', '.join([*cols, sums])} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}"
