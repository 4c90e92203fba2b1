"""Benchmark: what "last used" costs for the keys list, at ingest and at read, on a big store.

Run ``python benchmarks/bench_key_last_used.py`` (about a minute; ``--quick`` for a smoke run). A
runner calls ``main(quick)``, which returns the results as a dict.

A store is filled through ``SQLiteStore.write`` (the pipeline's path, so the ``key_last_used``
upsert runs in every spend transaction) with 1,000,000 spans from 2,000 virtual keys in batches of
5,000 (the pipeline's usual batch). Measured:

- **ingest**: seconds per batch with the table kept, and without (the upsert switched off for the
  comparison only), so the difference is what the table costs ingest;
- **read**: ``key_last_used`` for all 2,000 keys (the admin's list) and for 2 keys (a developer's),
  against the naive ``max(start_ns) ... GROUP BY key_id`` over the spend rows it replaces;
- **list**: ``KeyService.list()`` end to end over a 2,000-key file, warm (the parsed file is kept
  until the file changes) and cold (YAML parse included), and a developer's ``list(user=...)``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from spendgate_collector.keys.service import KeyService, hash_key
from spendgate_collector.records import SpendRecord
from spendgate_collector.store import key_usage
from spendgate_collector.store.sqlite import SQLiteStore

BATCH = 5_000
T0 = 1_790_000_000_000_000_000


def _batch(rng: random.Random, start: int, keys: int) -> list[SpendRecord]:
    out = []
    for n in range(start, start + BATCH):
        t = T0 + n * 1_000_000
        out.append(
            SpendRecord(
                trace_id=f"{n:032x}",
                span_id=f"{n:016x}",
                start_ns=t,
                end_ns=t + 900_000,
                model="gpt-4.1",
                developer=f"dev{n % keys}@acme.example",
                team=f"team{n % 20}",
                key_id=f"key_{rng.randrange(keys):010x}",
                input_tokens=1000,
                output_tokens=200,
                cost_usd=0.004,
            )
        )
    return out


def _fill(with_path: Path, without_path: Path, spans: int, keys: int) -> tuple[list[float], list[float]]:
    """Write the same batches to both stores, alternating, so machine noise hits both alike; seconds per batch."""
    rng = random.Random(7)
    rows = key_usage.rows
    kept, skipped = SQLiteStore(with_path, synchronous="normal"), SQLiteStore(without_path, synchronous="normal")
    with_times: list[float] = []
    without_times: list[float] = []
    try:
        for n, start in enumerate(range(0, spans, BATCH)):
            batch = _batch(rng, start, keys)
            order = [(kept, with_times), (skipped, without_times)]
            for store, times in order if n % 2 else order[::-1]:
                if store is skipped:
                    key_usage.rows = lambda records: []  # type: ignore[assignment]  # the comparison only
                began = time.perf_counter()
                store.write(batch)
                times.append(time.perf_counter() - began)
                key_usage.rows = rows  # type: ignore[assignment]
        return with_times, without_times
    finally:
        key_usage.rows = rows  # type: ignore[assignment]
        kept.close()
        skipped.close()


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main(quick: bool = False) -> dict[str, Any]:
    spans, keys = (50_000, 200) if quick else (1_000_000, 2_000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with_table, without = _fill(tmp_path / "with.db", tmp_path / "without.db", spans, keys)

        store = SQLiteStore(tmp_path / "with.db", readonly=True)
        all_ids = [f"key_{i:010x}" for i in range(keys)]
        conn = store._reader()
        assert len(store.key_last_used(all_ids)) == keys
        read_all = _best(lambda: store.key_last_used(all_ids), 20)
        read_two = _best(lambda: store.key_last_used(all_ids[:2]), 200)
        naive = _best(
            lambda: conn.execute("SELECT key_id, max(start_ns) FROM spend GROUP BY key_id").fetchall(),
            3,
        )

        keys_file = tmp_path / "keys.yaml"
        now = datetime.now(UTC).isoformat()
        entries = [
            {
                "id": key_id,
                "hash": hash_key(key_id),
                "prefix": "sg-abcd",
                "user": f"dev{i}@acme.example",
                "team": f"team{i % 20}",
                "cost_center": None,
                "repo": None,
                "models": [],
                "expires_at": None,
                "disabled": False,
                "revoked_at": None,
                "created_at": now,
            }
            for i, key_id in enumerate(all_ids)
        ]
        keys_file.write_text(yaml.safe_dump({"version": 1, "keys": entries}, sort_keys=False))
        service = KeyService(keys_file, audit=lambda entries: None, last_used=store.key_last_used)
        assert sum(v.last_used_at is not None for v in service.list()) == keys
        list_all = _best(service.list, 3)
        # Cold: a fresh service has not parsed the file yet (as after any change to it).
        list_cold = _best(
            lambda: KeyService(keys_file, audit=lambda entries: None, last_used=store.key_last_used).list(), 3
        )
        list_one = _best(lambda: service.list(user="dev7@acme.example"), 3)
        store.close()

    per_batch_with = statistics.median(with_table)
    per_batch_without = statistics.median(without)
    result = {
        "spans": spans,
        "keys": keys,
        "batch": BATCH,
        "ingest_batch_ms_with_table": per_batch_with * 1000,
        "ingest_batch_ms_without_table": per_batch_without * 1000,
        "ingest_overhead_pct": 100 * (per_batch_with - per_batch_without) / per_batch_without,
        "read_all_keys_ms": read_all * 1000,
        "read_two_keys_ms": read_two * 1000,
        "naive_group_by_ms": naive * 1000,
        "service_list_all_ms": list_all * 1000,
        "service_list_all_cold_ms": list_cold * 1000,
        "service_list_one_user_ms": list_one * 1000,
    }
    result["report"] = "\n".join(
        [
            f"key last used: {spans:,} spans from {keys:,} keys, batches of {BATCH:,}",
            f"  ingest per batch (median): {per_batch_with * 1000:.1f} ms with the table, "
            f"{per_batch_without * 1000:.1f} ms without ({result['ingest_overhead_pct']:+.1f} %)",
            f"  key_last_used, all {keys:,} keys: {read_all * 1000:.2f} ms; 2 keys: {read_two * 1000:.3f} ms",
            f"  naive max(start_ns) GROUP BY key_id over spend: {naive * 1000:.0f} ms",
            f"  KeyService.list(), {keys:,}-key file: {list_all * 1000:.1f} ms ({list_cold * 1000:.0f} ms right after "
            f"the file changed); one user's keys: {list_one * 1000:.2f} ms",
        ]
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small store: checks the benchmark runs")
    args = parser.parse_args()
    print(main(args.quick)["report"])
    sys.exit(0)
