"""The team-day rollup: kept equal to the daily rollup regrouped, used when a question allows it, back-filled once."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from spendgate_collector.store import team_daily_rollup
from spendgate_collector.store.query import SpendFilter
from spendgate_collector.store.sqlite import ROLLUP_MEASURES, SQLiteStore
from tests.collector.spans import ns
from tests.collector.test_store import record

NOVEMBER = SpendFilter(start=date(2026, 11, 1), end=date(2026, 11, 30))


def _records() -> list:
    """Two teams (one unnamed), three developers, two models, an unpriced call and an error, over 20 days."""
    out = []
    for i in range(1, 81):
        out.append(
            record(
                i,
                end_ns=ns(f"2026-11-{1 + i % 20:02d}T{i % 24:02d}:00:00"),
                developer=f"dev{i % 3}@acme.com",
                team=(None, "platform", "data")[i % 3],
                repo=f"r{i % 4}",
                model=("acme-coder", "acme-mini")[i % 2],
                feature=("agent", "chat")[i % 5 == 0],
                input_tokens=100 * i,
                output_tokens=10 * i,
                cost_usd=None if i == 7 else 0.0001 * i,
                status="error" if i % 11 == 0 else "ok",
            )
        )
    return out


def _regrouped_daily(store: SQLiteStore) -> dict[tuple[str, ...], tuple[int, ...]]:
    """The daily rollup summed by the team-day key, in Python: what the team-day table must hold."""
    out: dict[tuple[str, ...], list[int]] = {}
    for row in store.rollup_rows("rollup_daily"):
        acc = out.setdefault(tuple(row[k] for k in team_daily_rollup.KEY), [0] * len(ROLLUP_MEASURES))
        for i, m in enumerate(ROLLUP_MEASURES):
            acc[i] += row[m]
    return {k: tuple(v) for k, v in out.items()}


def _table(store: SQLiteStore) -> dict[tuple[str, ...], tuple[int, ...]]:
    return {
        tuple(row[k] for k in team_daily_rollup.KEY): tuple(row[m] for m in ROLLUP_MEASURES)
        for row in store.rollup_rows(team_daily_rollup.TABLE)
    }


def _day_model(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], tuple[Any, ...]]:
    return {(r["day"], r["model"]): (r["requests"], r["errors"], r["input_tokens"], r["cost_usd"]) for r in rows}


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_each_write_keeps_it_equal_to_the_daily_rollup_regrouped(store: SQLiteStore) -> None:
    records = _records()
    store.write(records[:50])
    store.write(records[30:])  # a retry of 30..49: only the new rows may count, here as in the daily rollup
    expected = _regrouped_daily(store)
    assert 80 == sum(v[0] for v in expected.values())
    assert expected == _table(store)


def test_day_by_model_is_read_from_it(store: SQLiteStore) -> None:
    store.write(_records())
    answer = store.timeseries(NOVEMBER, ("model",))
    # Proof of which table answered: change one of its rows behind the store's back.
    with sqlite3.connect(store.path) as conn:
        conn.execute(f"UPDATE {team_daily_rollup.TABLE} SET requests = requests + 1000 WHERE day = '2026-11-02'")
    changed = [r for r in store.rollup_rows(team_daily_rollup.TABLE) if r["day"] == "2026-11-02"]
    tampered = store.timeseries(NOVEMBER, ("model",))
    assert changed and sum(r["requests"] for r in answer) + 1000 * len(changed) == sum(r["requests"] for r in tampered)
    # A developer's slice needs the daily rollup, which still has the true numbers.
    assert 80 == sum(r["requests"] for dev in range(3) for r in store.timeseries(_dev(dev), ("model",)))


def _dev(n: int) -> SpendFilter:
    return SpendFilter(NOVEMBER.start, NOVEMBER.end, (("developer", f"dev{n}@acme.com"),))


@pytest.mark.parametrize(
    "flt",
    [
        NOVEMBER,
        SpendFilter(date(2026, 11, 3), date(2026, 11, 9)),
        SpendFilter(NOVEMBER.start, NOVEMBER.end, (("team", "platform"),)),
        SpendFilter(NOVEMBER.start, NOVEMBER.end, within=(("team", ("data", "platform")),)),
        SpendFilter(NOVEMBER.start, NOVEMBER.end, (("model", "acme-mini"), ("feature", "chat"))),
    ],
    ids=["month", "days", "team", "teams", "model-feature"],
)
def test_answers_equal_the_daily_rollups(tmp_path: Path, flt: SpendFilter) -> None:
    """Same question, once with the team-day table and once on a copy without it (a database not upgraded)."""
    with closing(SQLiteStore(tmp_path / "new.db")) as new:
        new.write(_records())
    old_path = tmp_path / "old.db"
    with closing(SQLiteStore(old_path)) as old:
        old.write(_records())
    with sqlite3.connect(old_path) as conn:
        conn.execute(f"DROP TABLE {team_daily_rollup.TABLE}")
    new = SQLiteStore(tmp_path / "new.db", readonly=True)
    old = SQLiteStore(old_path, readonly=True)  # read-only: never upgrades, so it must use rollup_daily
    try:
        assert _day_model(old.timeseries(flt, ("model",))) == _day_model(new.timeseries(flt, ("model",)))
        assert old.spend(flt, ("provider", "feature")) == new.spend(flt, ("provider", "feature"))
        assert old.top(flt, "model", 1) == new.top(flt, "model", 1)
        assert old.spend(flt, ("month",)) == new.spend(flt, ("month",))
        assert old.timeseries(flt) and old.timeseries(flt) == new.timeseries(flt)
    finally:
        new.close()
        old.close()


def test_an_existing_database_is_back_filled_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with closing(SQLiteStore(path)) as store:
        store.write(_records())
        expected = _table(store)
    with sqlite3.connect(path) as conn:  # a database from before the table existed
        conn.execute(f"DROP TABLE {team_daily_rollup.TABLE}")
        # As written before the schema registry: user_version 1, whatever tables the file holds.
        conn.execute("PRAGMA user_version = 1")
    with closing(SQLiteStore(path)) as store:
        assert expected == _table(store)
        store.write([record(500, end_ns=ns("2026-11-02T08:00:00"), team="data", model="acme-mini")])
        assert _regrouped_daily(store) == _table(store)
    with closing(SQLiteStore(path)) as store:  # opening again adds nothing twice
        assert _regrouped_daily(store) == _table(store)
