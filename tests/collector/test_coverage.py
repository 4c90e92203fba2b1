"""Attribution coverage: a real collector, spans over OTLP/HTTP with a hand-checkable mix of repo
sources, a Cursor-billed row from the Admin API mapping, and the numbers through the store, the API
and the CLI; plus the migration of a database from before the coverage rollup.

Every gateway call uses ``acme-mini`` (input 0.50 USD per million tokens, conftest.PRICES_YAML), so
1,000,000 input tokens cost exactly 0.50 USD:

    team      source            calls  cost
    platform  header            2      1.00   (2 x 1M input)
    platform  cursor-hook       1      1.00   (2M input)
    platform  (no repo) none    1      0.50
    data      prompt-workspace  1      0.50
    data      unspecified       1      0.50   (a repo, no source attribute)
    data      (no repo) none    1      0.50   (no source attribute at all)
    platform  cursor-admin-api  1      1.50   (Cursor's own 150 cents; ana, mapped to platform)

Total 7 gateway calls + 1 Cursor-billed, 5.50 USD.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from spendgate_collector.cli import report_command
from spendgate_collector.cursor_admin import event_to_record
from spendgate_collector.errors import StoreUnavailable
from spendgate_collector.keys.file import Principal
from spendgate_collector.store.query import SpendFilter, parse_month
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_semconv import attributes as sc
from spendgate_simulator.cursor_admin import day_ms, usage_event
from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.spans import ours, protobuf_body, span

PLATFORM = {"team": "platform", "cost_center": "CC-1001"}
DATA = {"team": "data", "cost_center": "CC-2002"}
M = 1_000_000


def _call(n: int, *, source: str | None, repo: str | None, input_tokens: int = M, **who: Any) -> Any:
    attrs = ours(model="acme-mini", provider="acme", repo=repo, input_tokens=input_tokens, output_tokens=0, **who)
    attrs.pop(sc.SPENDGATE_REPO_SOURCE, None)
    if source is not None:
        attrs[sc.SPENDGATE_REPO_SOURCE] = source
    return span(0x70, n, attrs, end=f"2026-11-{10 + n:02d}T12:00:00")


SPANS = [
    _call(1, source="header", repo="acme-api", developer="ana@acme.com", **PLATFORM),
    _call(2, source="header", repo="acme-api", developer="bo@acme.com", **PLATFORM),
    _call(3, source="cursor-hook", repo="acme-infra", input_tokens=2 * M, developer="ana@acme.com", **PLATFORM),
    _call(4, source="none", repo=None, developer="bo@acme.com", **PLATFORM),
    _call(5, source="prompt-workspace", repo="etl", developer="cy@acme.com", **DATA),
    _call(6, source=None, repo="etl", developer="cy@acme.com", **DATA),
    _call(7, source=None, repo=None, developer="cy@acme.com", **DATA),
]

ANA = Principal(key_id="k-ana", user="ana@acme.com", team="platform", cost_center="CC-1001")


def seed(running: RunningCollector) -> None:
    response = httpx.post(
        running.http_url, content=protobuf_body(SPANS), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    # A Cursor-billed event, stored the way the Admin API poller stores it (through the writer thread).
    event = usage_event(day_ms("2026-11-20") + 3_600_000, "ana@acme.com", total_cents=150)
    record = event_to_record(event, lambda email: ANA if email == ANA.user else None)
    assert record is not None
    pipeline = running.collector.pipeline
    assert pipeline is not None
    running.call(pipeline.write_records([record], lambda _inserted: []))


NOVEMBER = SpendFilter(*parse_month("month", "2026-11"))


def by_key(rows: list[dict[str, Any]], *group: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(*(r[g] for g in group), r["category"], r["source"]): r for r in rows}


def test_coverage_numbers_by_hand(tmp_path: Path) -> None:
    with run_collector(tmp_path) as running:
        seed(running)
        body = httpx.get(running.api_url + "/api/coverage", params={"month": "2026-11"}).json()

    assert (body["from"], body["to"], body["group_by"]) == ("2026-11-01", "2026-11-30", [])
    rows = by_key(body["rows"])
    # Attributed first (costliest first), then unattributed, then Cursor-billed.
    assert [(r["category"], r["source"]) for r in body["rows"]] == [
        ("attributed", "header"),
        ("attributed", "cursor-hook"),
        ("attributed", "prompt-workspace"),
        ("attributed", "unspecified"),
        ("unattributed", "none"),
        ("cursor-billed", "cursor-admin-api"),
    ]
    assert rows[("attributed", "header")]["requests"] == 2
    assert rows[("attributed", "header")]["cost_usd"] == pytest.approx(1.0)
    assert rows[("attributed", "header")]["cost_share"] == pytest.approx(1.0 / 5.5, abs=1e-6)
    assert rows[("attributed", "header")]["requests_share"] == pytest.approx(2 / 8)
    # "none" and a missing source with no repo are the same thing: unattributed.
    assert rows[("unattributed", "none")]["requests"] == 2
    assert rows[("unattributed", "none")]["cost_usd"] == pytest.approx(1.0)
    assert rows[("cursor-billed", "cursor-admin-api")]["cost_usd"] == pytest.approx(1.5)

    (summary,) = body["summary"]
    assert summary["total"]["requests"] == 8 and summary["total"]["cost_usd"] == pytest.approx(5.5)
    assert summary["attributed"]["requests"] == 5 and summary["attributed"]["cost_usd"] == pytest.approx(3.0)
    assert summary["attributed"]["cost_share"] == pytest.approx(3.0 / 5.5, abs=1e-6)
    assert summary["unattributed"]["cost_share"] == pytest.approx(1.0 / 5.5, abs=1e-6)
    assert summary["cursor_billed"]["requests_share"] == pytest.approx(1 / 8)
    # Gateway coverage leaves the Cursor-billed line out: 3.00 of 4.00 USD, 5 of 7 calls.
    assert summary["gateway_coverage"] == {"requests_share": pytest.approx(5 / 7, abs=1e-6), "cost_share": 0.75}


def test_coverage_grouped_filtered_and_bad_params(tmp_path: Path) -> None:
    with run_collector(tmp_path) as running:
        seed(running)
        api = running.api_url + "/api/coverage"
        grouped = httpx.get(api, params={"month": "2026-11", "group_by": "team"}).json()
        data_only = httpx.get(api, params={"month": "2026-11", "team": "data"}).json()
        one_dev = httpx.get(api, params={"from": "2026-11-01", "to": "2026-11-30", "developer": "bo@acme.com"}).json()
        bad_dim = httpx.get(api, params={"month": "2026-11", "repo": "etl"})
        bad_group = httpx.get(api, params={"group_by": "model"})
        unknown = httpx.get(api, params={"colour": "red"})

    summaries = {s["team"]: s for s in grouped["summary"]}
    assert summaries["platform"]["total"]["cost_usd"] == pytest.approx(4.0)
    assert summaries["platform"]["gateway_coverage"]["cost_share"] == pytest.approx(2.0 / 2.5)
    assert summaries["data"]["total"]["cost_usd"] == pytest.approx(1.5)
    assert summaries["data"]["cursor_billed"]["requests"] == 0
    assert summaries["data"]["attributed"]["cost_share"] == pytest.approx(1.0 / 1.5, abs=1e-6)
    assert {r["team"] for r in grouped["rows"]} == {"platform", "data"}

    assert data_only["summary"][0]["total"]["requests"] == 3
    assert [(r["category"], r["source"], r["requests"]) for r in one_dev["rows"]] == [
        ("attributed", "header", 1),
        ("unattributed", "none", 1),
    ]
    assert bad_dim.status_code == 400 and bad_dim.json()["param"] == "repo"
    assert bad_group.status_code == 400 and bad_group.json()["param"] == "group_by"
    assert unknown.status_code == 400 and unknown.json()["param"] == "colour"


def test_coverage_cli_table_csv_json(tmp_path: Path) -> None:
    with run_collector(tmp_path) as running:
        seed(running)
        db = str(running.store.path)
        runner = CliRunner()
        table = runner.invoke(report_command, ["--db", db, "--month", "2026-11", "--coverage", "--by", "team"])
        csv_out = runner.invoke(report_command, ["--db", db, "--month", "2026-11", "--coverage", "--csv"])
        json_out = runner.invoke(
            report_command, ["--api", running.api_url, "--month", "2026-11", "--coverage", "--json"]
        )
        wrong = runner.invoke(report_command, ["--db", db, "--coverage", "--model", "acme-mini"])
        both = runner.invoke(report_command, ["--db", db, "--coverage", "--chargeback"])

    assert table.exit_code == 0, table.output
    assert "Coverage 2026-11-01 .. 2026-11-30 (UTC)" in table.output
    assert "platform  cursor-billed  cursor-admin-api" in table.output
    assert (
        "team platform: repo known for 60.0 % of requests (50.0 % of cost); no repo 20.0 % (12.5 %); "
        "Cursor-billed, no repo by nature, 20.0 % (37.5 %). Gateway traffic with a repo: 75.0 % of requests, "
        "80.0 % of cost." in table.output.replace("\n", " ")
    )
    assert csv_out.exit_code == 0, csv_out.output
    lines = csv_out.output.splitlines()
    assert (
        lines[0]
        == "category,source,requests,requests_share,cost_usd,cost_share,unpriced_requests,input_tokens,output_tokens"
    )
    assert "attributed,header,2,0.25,1.000000,0.181818,0,2000000,0" in lines
    assert json.loads(json_out.output)["summary"][0]["total"]["requests"] == 8
    assert (
        wrong.exit_code == 1 and "--model: coverage is counted per developer, team and cost_center only" in wrong.output
    )
    assert both.exit_code == 1 and "choose one" in both.output


def test_existing_database_is_migrated_and_backfilled(tmp_path: Path) -> None:
    """A database from before the coverage rollup: the tables are added and filled on open, once."""
    with run_collector(tmp_path) as running:
        seed(running)
        path = running.store.path
        expected = running.store.coverage(NOVEMBER)
        expected_hours = running.store.developer_hours(0, 10**9)

    # Make it look like an older collector's file: no new tables, and the raw rows of the 11th and
    # 12th (two header calls, ana and bo) already deleted by retention; the daily rollup still has them.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE rollup_coverage")
        conn.execute("DROP TABLE rollup_developer_hours")
        # As written before the schema registry: user_version 1, whatever tables the file holds.
        conn.execute("PRAGMA user_version = 1")
    with pytest.raises(StoreUnavailable, match="start the collector on it once"):
        SQLiteStore(path, readonly=True).coverage(NOVEMBER)

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM spend WHERE end_ns < ?", (day_ms("2026-11-13") * 1_000_000,))
        assert conn.execute("SELECT count(*) FROM spend").fetchone()[0] == 6

    store = SQLiteStore(path)  # what a collector start does
    try:
        migrated = store.coverage(NOVEMBER)
        hours = store.developer_hours(0, 10**9)
        # A second open changes nothing (the back-fill runs only when the table is new).
        store.close()
        store = SQLiteStore(path)
        assert store.coverage(NOVEMBER) == migrated
    finally:
        store.close()

    def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for r in rows:
            out[(r["repo_source"], r["attributed"])] = out.get((r["repo_source"], r["attributed"]), 0) + r["requests"]
        return out

    before, after = keyed(expected), keyed(migrated)
    assert before[("header", 1)] == 2
    # The purged header calls come back as "untracked" but still attributed; everything else is exact.
    assert after == {**{k: v for k, v in before.items() if k != ("header", 1)}, ("untracked", 1): 2}
    assert sum(r["cost_nanos"] for r in migrated) == sum(r["cost_nanos"] for r in expected) == 5_500_000_000
    # The hourly rollup is back-filled from the raw rows only, and never holds Cursor-billed rows.
    assert sum(r["requests"] for r in expected_hours) == 7
    assert sum(r["requests"] for r in hours) == 5
