"""Reconciliation: gateway calls against Cursor's BYOK requests, per developer and UTC hour.

The first test runs a real collector whose Cursor Admin API connector polls the simulated Admin API
over loopback HTTP, while gateway spans arrive over OTLP/HTTP; the second drives the poller on a
fixed clock to seed a day Cursor's two endpoints disagree about.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from spendgate_collector.attribution.api import AttributionApi
from spendgate_collector.attribution.reconcile import Options, reconcile
from spendgate_collector.auth.identity import Role, allowed_roles
from spendgate_collector.cli import report_command
from spendgate_collector.cursor_admin import CursorAdminClient, CursorAdminPoller, StateTable
from spendgate_collector.store.query import SpendFilter
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_simulator.cursor_admin import AdminSimulator, create_admin_app, day_ms, usage_event
from tests.collector.conftest import run_collector
from tests.collector.spans import ours, protobuf_body, span
from tests.support.aio_server import serve_app, start_app

HOUR = 3_600_000
MIN = 60_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _byok(ts_ms: int, email: str) -> dict[str, Any]:
    return usage_event(ts_ms, email, kind="User API Key", chargeable=False, total_cents=0)


def _gateway_call(n: int, developer: str, start_ms: int) -> Any:
    attrs = ours(model="acme-mini", provider="acme", developer=developer, input_tokens=1000, output_tokens=10)
    # span() takes the end; a 1.5 s call that starts at start_ms.
    return span(0x90, n, attrs, end=_iso(start_ms + 1500), duration_ms=1500)


@contextlib.contextmanager
def serve(sim: AdminSimulator) -> Iterator[str]:
    """The simulated Admin API on a loopback port, on its own event loop thread; yields its base URL."""
    with serve_app(lambda: create_admin_app(sim)) as server:
        yield server.url


def test_seeded_gap_is_found_and_matching_hours_are_not(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CURSOR_TEST_KEY", "key_test_team")
    h = (time.time_ns() // 1_000_000) // HOUR * HOUR  # this UTC hour's start
    gap_hour, match_hour, pending_hour = h - 5 * HOUR, h - 4 * HOUR, h - HOUR
    events = [
        # alice: 4 BYOK requests in gap_hour that never reached the gateway -> the gap.
        *(_byok(gap_hour + (5 + i) * MIN, "alice@acme.dev") for i in range(4)),
        # ...a Cursor-billed (not BYOK) call in the same hour does not count as BYOK.
        usage_event(gap_hour + 30 * MIN, "alice@acme.dev", kind="Usage-based", total_cents=20),
        # alice: 3 in match_hour, and the gateway saw those 3 -> not flagged.
        *(_byok(match_hour + (10 + i) * MIN, "alice@acme.dev") for i in range(3)),
        # bob: one at 59:59 whose gateway span starts one second into the next hour -> cancels out.
        _byok(gap_hour + HOUR - 1000, "bob@acme.dev"),
        # alice: 5 in the last hour: Cursor's data is not final there -> pending, never a gap.
        *(_byok(pending_hour + (1 + i) * MIN, "alice@acme.dev") for i in range(5)),
    ]
    sim = AdminSimulator(events=events)
    gateway = [
        *(_gateway_call(1 + i, "alice@acme.dev", match_hour + (10 + i) * MIN) for i in range(3)),
        _gateway_call(10, "Bob@acme.dev", match_hour + 1000),  # emails compare case-blind
    ]
    with serve(sim) as base_url:
        settings = {
            "cursor_admin": {
                "enabled": True,
                "api_key_env": "CURSOR_TEST_KEY",
                "base_url": base_url,
                "requests_per_minute": 600,
                "poll_interval_s": 0.2,
                "backfill_s": 86_400,
            }
        }
        with run_collector(tmp_path, **settings) as running:
            answer = httpx.post(
                running.http_url, content=protobuf_body(gateway), headers={"Content-Type": "application/x-protobuf"}
            )
            assert answer.status_code == 200
            poller = running.collector.cursor_admin
            assert poller is not None
            for _ in range(300):
                if poller.totals.byok_events >= 13 and poller.totals.daily_rows > 0:
                    break
                time.sleep(0.05)
            assert poller.totals.byok_events >= 13 and poller.totals.daily_rows > 0
            period = {"from": _iso(gap_hour)[:10], "to": _iso(h)[:10]}
            body = httpx.get(running.api_url + "/api/reconcile", params={**period, "min_gap": "1"}).json()
            strict = httpx.get(running.api_url + "/api/reconcile", params={**period, "min_gap": "5"}).json()
            bad = httpx.get(running.api_url + "/api/reconcile", params={**period, "tolerance": "2"})
            span_args = ["--from", period["from"], "--to", period["to"], "--reconcile", "--min-gap", "1"]
            cli = CliRunner().invoke(report_command, ["--db", str(running.store.path), *span_args])
            cli_csv = CliRunner().invoke(report_command, ["--api", running.api_url, *span_args, "--csv"])

    assert body["judged_until"] == _iso(h - 2 * HOUR) + "Z"  # settle_hours = 2 before the last read
    assert [(g["developer"], g["start"], g["kind"], g["gap"]) for g in body["gaps"]] == [
        ("alice@acme.dev", _iso(gap_hour) + "Z", "cursor-only", 4)
    ]
    (gap,) = body["gaps"]
    assert (gap["gateway_requests"], gap["cursor_byok_requests"], gap["period"]) == (0, 4, "hour")
    assert gap["cursor_input_tokens"] == 4000
    assert "base URL" in gap["reason"] and "personal provider key" in gap["reason"]
    summary = body["summary"]
    assert summary["developers_compared"] == 2
    assert summary["developer_hours_pending"] == 1  # alice's last hour
    assert (summary["gateway_requests_judged"], summary["cursor_byok_requests_judged"]) == (4, 8)
    assert strict["gaps"] == []  # 4 < min_gap 5
    assert bad.status_code == 400 and bad.json()["param"] == "tolerance"

    assert cli.exit_code == 0, cli.output
    assert f"alice@acme.dev  {_iso(gap_hour)}Z .. {_iso(gap_hour + HOUR)}Z  cursor-only" in cli.output
    assert "1 pending" in cli.output and "minus 2 h for Cursor's lag" in cli.output
    assert cli_csv.exit_code == 0, cli_csv.output
    assert cli_csv.output.splitlines()[0].startswith("developer,period,start,end,kind,gap,")
    assert len(cli_csv.output.splitlines()) == 2


T0 = day_ms("2026-11-20")


def test_daily_usage_cross_check_finds_events_the_poller_never_read(tmp_path: Path) -> None:
    """The first poll reads from 12:00 on: carol's three 02:00 BYOK events are only in the daily total."""
    now = T0 + 2 * 86_400_000
    sim = AdminSimulator(
        events=[*(_byok(T0 + 2 * HOUR + i * MIN, "carol@acme.dev") for i in range(3))]
        + [_byok(T0 + 20 * HOUR + i * MIN, "carol@acme.dev") for i in range(2)]
    )
    store = SQLiteStore(tmp_path / "s.db")

    async def main() -> None:
        runner, port = await start_app(create_admin_app(sim))
        client = CursorAdminClient("key_test_team", base_url=f"http://127.0.0.1:{port}", requests_per_minute=60_000)
        poller = CursorAdminPoller(
            client,
            store,
            StateTable(store.path, "https://api.cursor.com"),
            backfill_s=1.5 * 86_400,
            lookback_s=1.5 * 86_400,  # so the second poll re-reads the same events
            now_ms=lambda: now,
        )
        try:
            result = await poller.poll_once()
            assert (result.byok_events, result.inserted) == (2, 0)  # BYOK events are never spend rows
            again = await poller.poll_once()  # a re-read stores nothing twice
            assert (again.byok_events, again.daily_rows) == (2, 1)
        finally:
            await poller.shutdown()
            await runner.cleanup()

    try:
        asyncio.run(main())
        day = datetime.fromtimestamp(T0 / 1000, UTC).date()
        report = reconcile(store, store.path, SpendFilter(day, day), Options(min_gap=1), now)
    finally:
        store.close()

    kinds = {(g["period"], g["kind"]): g for g in report["gaps"]}
    daily = kinds[("day", "cursor-sources-disagree")]
    assert (daily["cursor_api_key_reqs"], daily["cursor_byok_requests"], daily["gap"]) == (5, 2, 3)
    assert "some events were missed" in daily["reason"]
    assert kinds[("hour", "cursor-only")]["cursor_byok_requests"] == 2  # the events read are in one hour, once
    assert report["summary"]["cursor_byok_requests_judged"] == 2


def test_without_cursor_data_nothing_is_compared(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        day = datetime.fromtimestamp(T0 / 1000, UTC).date()
        report = reconcile(store, store.path, SpendFilter(day, day), Options(), T0)
    finally:
        store.close()
    assert report["gaps"] == [] and report["cursor_polled_until"] is None
    assert "has not read this database's Cursor data" in report["note"]


def test_routes_are_marked_for_their_roles() -> None:
    assert allowed_roles(AttributionApi.reconcile) == {Role.ADMIN, Role.FINANCE, Role.LEAD}
    assert allowed_roles(AttributionApi.coverage) == {Role.ADMIN, Role.FINANCE, Role.LEAD, Role.DEVELOPER}
