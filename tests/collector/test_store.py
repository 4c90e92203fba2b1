"""SQLiteStore: idempotent writes, rollups from exactly the inserted rows, retention, query routing."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import dataclasses
from datetime import date
from pathlib import Path

import pytest

from spendgate_collector.records import SpendRecord
from spendgate_collector.store.query import SpendFilter
from spendgate_collector.store.sqlite import SQLiteStore
from tests.collector.spans import ns


def record(span_id: int, **kw: object) -> SpendRecord:
    base = SpendRecord(
        trace_id=f"{1:032x}",
        span_id=f"{span_id:016x}",
        start_ns=ns("2026-11-03T09:59:00"),
        end_ns=ns("2026-11-03T10:00:00"),
        model="acme-coder",
        developer="ana@acme.com",
        team="platform",
        cost_center="CC-1001",
        repo="acme-api",
        feature="agent",
        provider="acme",
        input_tokens=1000,
        output_tokens=100,
        cost_usd=0.0028,
        cost_source="override",
    )
    return dataclasses.replace(base, **kw)


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_write_is_idempotent_and_rollups_count_only_inserted_rows(store: SQLiteStore) -> None:
    first = store.write([record(1), record(2)])
    assert (2, 0) == (len(first.inserted), first.duplicates)
    # A retry of span 1, span 3 twice in the same batch, and one new span.
    again = store.write([record(1), record(3), record(3), record(4, status="error", error_type="500")])
    assert ([f"{3:016x}", f"{4:016x}"], 2) == ([r.span_id for r in again.inserted], again.duplicates)

    (daily,) = store.rollup_rows("rollup_daily")
    assert (4, 1, 4000, 400, 4 * 2_800_000) == (
        daily["requests"],
        daily["errors"],
        daily["input_tokens"],
        daily["output_tokens"],
        daily["cost_nanos"],
    )
    assert 4 == len(store.raw_rows())
    assert (2, 4, 2) == (store.stats().batches_written, store.stats().rows_inserted, store.stats().duplicates)


def test_unpriced_records_keep_null_cost_and_their_own_bucket(store: SQLiteStore) -> None:
    store.write([record(1), record(2, model="mystery-1", cost_usd=None, cost_source="unpriced", input_tokens=50)])
    assert [None, pytest.approx(0.0028)] == sorted(
        (row["cost_usd"] for row in store.raw_rows()), key=lambda v: v is not None
    )
    (total,) = store.spend(SpendFilter(), ())
    assert (2, 1, 1050, 0.0028) == (
        total["requests"],
        total["unpriced_requests"],
        total["input_tokens"],
        total["cost_usd"],
    )
    assert [
        {
            "model": "mystery-1",
            "provider": "acme",
            "requests": 1,
            "input_tokens": 50,
            "output_tokens": 100,
            "first_day": "2026-11-03",
            "last_day": "2026-11-03",
        }
    ] == store.unpriced(SpendFilter())


def test_missing_dimensions_are_grouped_as_none(store: SQLiteStore) -> None:
    store.write([record(1, team=None, repo=None), record(2, team=None, repo=None)])
    assert [(None, 2)] == [(row["team"], row["requests"]) for row in store.spend(SpendFilter(), ("team",))]


def test_monthly_rollup_answers_like_the_daily_one(store: SQLiteStore) -> None:
    records = [
        record(i, end_ns=ns(f"2026-11-{1 + i % 30:02d}T12:00:00"), developer=f"dev{i % 3}", repo=f"r{i % 2}")
        for i in range(1, 61)
    ] + [record(100, end_ns=ns("2026-12-01T00:00:00"))]
    store.write(records)
    november = SpendFilter(start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert november.covers_whole_months()
    # Grouping by day forces the daily table; summing those rows must give the monthly answer.
    by_day = store.timeseries(november, ("developer", "repo"))
    summed: dict[tuple[str, str], int] = {}
    for row in by_day:
        key = (row["developer"], row["repo"])
        summed[key] = summed.get(key, 0) + row["requests"]
    assert summed == {(row["developer"], row["repo"]): row["requests"] for row in store.chargeback(november)}
    assert 60 == sum(summed.values())
    # A range that is not whole months is answered from the daily table, day-exact.
    first_week = SpendFilter(start=date(2026, 11, 1), end=date(2026, 11, 7))
    assert 14 == sum(row["requests"] for row in store.spend(first_week, ("developer",)))


def test_purge_removes_old_raw_rows_and_keeps_rollups(store: SQLiteStore) -> None:
    store.write([record(1, end_ns=ns("2026-01-01T00:00:00")), record(2, end_ns=ns("2026-11-03T00:00:00"))])
    assert 1 == store.purge_raw(ns("2026-06-01T00:00:00"), limit=100)
    assert [f"{2:016x}"] == [row["span_id"] for row in store.raw_rows()]
    assert 2 == sum(row["requests"] for row in store.rollup_rows("rollup_daily"))


def test_readonly_store_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SQLiteStore(tmp_path / "missing.db", readonly=True)
    SQLiteStore(tmp_path / "made.db").close()
    reader = SQLiteStore(tmp_path / "made.db", readonly=True)
    assert [] == reader.chargeback(SpendFilter())
    reader.close()


def test_reopening_keeps_data_and_schema(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "s.db")
    first.write([record(1)])
    first.close()
    first.close()  # idempotent
    second = SQLiteStore(tmp_path / "s.db")
    assert 1 == second.write([record(1), record(2)]).duplicates
    assert 2 == len(second.raw_rows())
    second.close()
