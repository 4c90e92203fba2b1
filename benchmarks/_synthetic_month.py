"""The synthetic organisation the query benchmarks write a month of rollups for, and how they write it.

Rollup rows are written straight into a fresh database (not through OTLP), so a month of millions
of spans takes seconds to set up; the developers, teams and working days are the same in every
benchmark so their numbers compare.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from spendgate_collector.store.query import parse_month
from spendgate_collector.store.sqlite import SQLiteStore

DEVELOPERS = 500
TEAMS = 8


def developer(i: int) -> tuple[str, str, str]:
    """Developer ``i``'s email, team and cost centre (teams take developers in turn)."""
    team = i % TEAMS
    return f"dev{i:03d}@acme.com", f"team-{team}", f"CC-{1000 + team}"


def weekdays(month: str) -> list[date]:
    """The Monday-to-Friday days of ``YYYY-MM``: the days the organisation works."""
    first, last = parse_month("month", month)
    return [first.replace(day=d) for d in range(1, last.day + 1) if first.replace(day=d).weekday() < 5]


@contextlib.contextmanager
def bulk_write(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``db`` (given the store's schema first) inside one transaction, committed at the end.

    ``synchronous = OFF``: set-up data need not survive a power cut, and fsyncs would dominate the set-up.
    """
    SQLiteStore(db, synchronous="normal").close()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()
