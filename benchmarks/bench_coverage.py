"""Coverage and reconciliation: query latency on a 5M-span month, and the write-path cost of their rollups.

    python benchmarks/bench_coverage.py            # ~1 minute
    python benchmarks/bench_coverage.py --quick    # a few seconds, 500k spans

(a) Query: the coverage rollup for one month of 5 million spans (500 developers in 8 teams, every
    weekday, 2-4 repo sources per developer-day with some unattributed and Cursor-billed traffic)
    is synthesised straight into a fresh database (``executemany``, not through OTLP), then
    ``SQLiteStore.coverage`` (ungrouped, and grouped by team / by developer) plus ``coverage.build``
    is timed; the median is reported. The gateway's developer-hours rollup for the same month
    (about 10 active hours per developer-day) is timed the same way through ``reconcile``, with no
    Cursor data so that only the gateway side and the bookkeeping are measured.
(b) Write path: what the two rollups add per inserted span (``coverage_rollup.rows`` +
    ``developer_hours.rows`` on a 512-span batch, the pipeline's batch size), in microseconds.

``main()`` returns the numbers as a dict and prints them as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _synthetic_month import DEVELOPERS, bulk_write, weekdays
from _synthetic_month import developer as synthetic_developer
from _timing import median_ms

from spendgate_collector.attribution import coverage
from spendgate_collector.attribution.reconcile import Options, reconcile
from spendgate_collector.records import SpendRecord
from spendgate_collector.store import coverage_rollup, developer_hours
from spendgate_collector.store.query import SpendFilter, parse_month
from spendgate_collector.store.sqlite import SQLiteStore, day_string

SOURCES = ["header", "cursor-hook", "prompt-workspace", "model-alias", "key-default"]
MONTH = "2026-11"


def synthesize(db: Path, spans_total: int, rng: random.Random) -> dict[str, int]:
    """One month of coverage and developer-hour rollup rows for ``spans_total`` spans."""
    days = weekdays(MONTH)
    keys: list[tuple[Any, ...]] = []
    hour_keys: list[tuple[int, str]] = []
    for dev in range(DEVELOPERS):
        developer, team, cost_center = synthetic_developer(dev)
        for day in days:
            for source in rng.sample(SOURCES, k=rng.randint(2, 4)):
                keys.append((day.isoformat(), developer, team, cost_center, source, 1))
            keys.append((day.isoformat(), developer, team, cost_center, "none", 0))
            if rng.random() < 0.5:
                keys.append((day.isoformat(), developer, team, cost_center, "cursor-admin-api", 0))
            day_hour = int(time.mktime(day.timetuple())) // 3600  # an hour number in that day is enough here
            for h in sorted(rng.sample(range(7, 20), k=10)):
                hour_keys.append((day_hour + h, developer))
    per_row = spans_total // len(keys)
    rows = []
    for key in keys:
        requests = per_row
        tokens = requests * rng.randrange(5_000, 40_000)
        rows.append((*key, requests, 0, tokens, tokens // 20, tokens * 1500))
    per_hour = spans_total // len(hour_keys)
    hour_rows = [(h, d, per_hour, 0, per_hour * 20_000, per_hour * 800, per_hour * 10_000) for h, d in hour_keys]
    with bulk_write(db) as conn:
        conn.executemany(coverage_rollup.UPSERT, rows)
        conn.executemany(developer_hours.UPSERT, hour_rows)
    return {
        "spans": per_row * len(keys),
        "coverage_rollup_rows": len(rows),
        "developer_hour_rows": len(hour_rows),
    }


def bench_queries(spans_total: int, repeats: int, workdir: Path) -> dict[str, Any]:
    db = workdir / "coverage.db"
    started = time.perf_counter()
    shape = synthesize(db, spans_total, random.Random(6))
    shape["synthesis_seconds"] = round(time.perf_counter() - started, 2)  # type: ignore[assignment]
    store = SQLiteStore(db, readonly=True)
    november = SpendFilter(*parse_month("month", MONTH))

    def report(group_by: tuple[str, ...]) -> None:
        coverage.build(store.coverage(november, group_by), group_by)

    try:
        return {
            **shape,
            "coverage_month_median_ms": median_ms(lambda: report(()), repeats),
            "coverage_by_team_median_ms": median_ms(lambda: report(("team",)), repeats),
            "coverage_by_developer_median_ms": median_ms(lambda: report(("developer",)), repeats),
            "reconcile_month_gateway_side_median_ms": median_ms(
                lambda: reconcile(store, db, november, Options(), 0), max(3, repeats // 5)
            ),
        }
    finally:
        store.close()


def bench_write_path(batches: int) -> dict[str, Any]:
    rng = random.Random(2)
    batch = [
        SpendRecord(
            trace_id=f"{i:032x}",
            span_id=f"{i:016x}",
            start_ns=1_795_000_000_000_000_000 + i * 1_000_000,
            end_ns=1_795_000_000_000_000_000 + i * 1_000_000 + 900_000_000,
            model="gpt-4o",
            developer=f"dev{rng.randrange(DEVELOPERS):03d}@acme.com",
            team="team-1",
            cost_center="CC-1001",
            repo="repo-01",
            repo_source=rng.choice(SOURCES),
            input_tokens=10_000,
            output_tokens=500,
            cost_usd=0.0123,
        )
        for i in range(512)
    ]
    started = time.perf_counter()
    for _ in range(batches):
        coverage_rollup.rows(batch, day_string)
        developer_hours.rows(batch)
    per_span_us = (time.perf_counter() - started) / (batches * len(batch)) * 1e6
    return {"batch": len(batch), "added_us_per_span": round(per_span_us, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-coverage-") as tmp:
        results = {
            "query": bench_queries(500_000 if args.quick else 5_000_000, 5 if args.quick else 25, Path(tmp)),
            "write_path": bench_write_path(20 if args.quick else 200),
        }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
